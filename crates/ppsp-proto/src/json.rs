//! The JSON protocol of RFC 7846.
