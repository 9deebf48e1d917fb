//! The event loop, connections and worker pool.
