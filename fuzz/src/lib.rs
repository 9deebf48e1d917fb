//! Helpers shared by the fuzz targets (`fuzz_targets/`): how an input is
//! cut into the chunks a socket would deliver (`split`).

pub mod split;
