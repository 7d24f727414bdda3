//! STUN Binding messages (RFC 8489), the part a tracker's STUN service and a peer need.
