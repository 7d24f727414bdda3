//! The XML protocol of draft-gu-ppsp-tracker-protocol-06.
