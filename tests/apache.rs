//! Apache httpd tests (written next).
