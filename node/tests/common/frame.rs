//! Kafka request frames, for the tests that speak the protocol over a socket of their own
//! (tokio's in kafka_socket.rs, turmoil's in turmoil/client.rs).

use bytes::{BufMut as _, BytesMut};
use kafka_protocol::messages::RequestHeader;
use kafka_protocol::protocol::{Encodable as _, Request, StrBytes};

/// The whole frame of request `body` at `version`: its size, its header, then the body.
pub fn request<R: Request>(
    version: i16,
    correlation_id: i32,
    client_id: &'static str,
    body: &R,
) -> Result<BytesMut, String> {
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(client_id)))
        .encode(&mut frame, R::header_version(version))
        .map_err(|e| e.to_string())?;
    body.encode(&mut frame, version).map_err(|e| e.to_string())?;
    let size = i32::try_from(frame.len() - 4).map_err(|_| "a request over 2 GiB".to_string())?;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    Ok(frame)
}
