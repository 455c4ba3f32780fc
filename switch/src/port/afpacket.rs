//! AF_PACKET port backend: PACKET_VNET_HDR, recvmmsg/sendmmsg batches, PACKET_IGNORE_OUTGOING.
