//! Internal module (filled in with the behaviour).
