//! The PPSP tracker's HTTP(S) front end.
