//! The PPSP tracker core.
