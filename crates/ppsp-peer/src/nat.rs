//! Address gathering and NAT traversal helpers.
