//! OpenFlow 1.3 messages: header, the `Message` enum, decode and encode of every type.
