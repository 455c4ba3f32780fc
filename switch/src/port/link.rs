//! Kernel link-state watcher (rtnetlink RTMGRP_LINK): carrier up/down per ifindex.
