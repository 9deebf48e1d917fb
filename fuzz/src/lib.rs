//! Helpers shared by the fuzz targets (`fuzz_targets/`): how an input is
//! cut into the chunks a socket would deliver (`split`), and, for the
//! `connection` target, an in-process server (`server`), what an input
//! asks of it (`requests`) and the checks of what it writes back
//! (`output`).

pub mod output;
pub mod requests;
pub mod server;
pub mod split;
