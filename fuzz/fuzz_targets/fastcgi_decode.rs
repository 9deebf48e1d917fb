//! Feeds arbitrary bytes to the FastCGI decoder, split where the first
//! byte says, so resumption from every state is exercised.
#![no_main]
use fastgate::protocol::fastcgi::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let mut dec = Decoder::new();
    for chunk in input.chunks(usize::from(step).max(1)) {
        let mut rest = chunk;
        while let Ok((n, Some(_))) = dec.decode(rest) {
            rest = &rest[n..];
        }
    }
});
