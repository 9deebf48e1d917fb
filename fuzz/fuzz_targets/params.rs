//! Parses arbitrary bytes as a FastCGI pair block and as SCGI params, and
//! reads every pair back.
#![no_main]
use fastgate::protocol::params::Params;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for params in [
        Params::from_fastcgi(data.to_vec()),
        Params::from_scgi(data.to_vec()),
    ]
    .into_iter()
    .flatten()
    {
        assert!(params.byte_len() <= data.len());
        let _ = params.iter().count() + usize::from(params.get("CONTENT_LENGTH").is_some());
    }
});
