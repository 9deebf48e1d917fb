//! Sends one request to a backend (`fastgate request`).
