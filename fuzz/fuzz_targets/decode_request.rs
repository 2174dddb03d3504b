//! Arbitrary bytes, as a client connection would deliver them, through the Kafka frame
//! decoder and the request decoder; and the same bytes taken as one frame's contents. Any
//! panic or abort (an allocation the bytes do not justify included) is a bug: bad input must
//! come out as a typed error.

#![no_main]

use bytes::BytesMut;
use cairn_node::kafka::{Decoded, FrameDecoder, decode_request, encode_unsupported};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // A small frame limit keeps the fuzzer's inputs inside frames.
    let decoder = FrameDecoder::new(1 << 20);
    let mut stream = BytesMut::from(data);
    while let Ok(Some(frame)) = decoder.decode(&mut stream) {
        answer(decode_request(frame));
    }
    answer(decode_request(BytesMut::from(data)));
});

fn answer(decoded: Result<Decoded, cairn_node::kafka::DecodeError>) {
    if let Ok(Decoded::Unsupported(unsupported)) = decoded {
        let _ = encode_unsupported(&unsupported);
    }
}
