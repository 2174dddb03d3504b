//! RESP2, the Redis protocol, written and read by hand over one tokio `TcpStream`.
//!
//! The `redis` crate builds a `Cmd` with its arguments copied and parses every reply into a
//! tree of `Value`s; at the rates of the suite that cost more CPU than redis-server itself
//! (README.md has the measurement). Here commands are encoded into one reused buffer, and
//! replies are read as a flat stream of tokens (array headers, bulk strings, nil, errors)
//! straight from the receive buffer, so a caller walks a reply of any shape without an
//! allocation per element.

use std::ops::Range;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Bytes the receive buffer grows by when it needs room for a read.
const READ_CHUNK_BYTES: usize = 256 * 1024;

/// Appends one command, an array of bulk strings, to `out`.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_decimal(out, args.len());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        push_decimal(out, arg.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `value` in decimal without allocating.
fn push_decimal(out: &mut Vec<u8>, mut value: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// One element of a reply, in the order RESP sends them. A bulk string is a range of the
/// receive buffer, valid until the next call that reads tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// `*N`: an array of N elements follows (N = -1 is a nil array, given as `Nil`).
    Array(usize),
    /// `$N`: a bulk string.
    Bulk(Range<usize>),
    /// `$-1` or `*-1`.
    Nil,
    /// `:N`
    Integer(i64),
    /// `+...`
    Simple(Range<usize>),
    /// `-...`: the server refused the command.
    Error(String),
}

/// Parses the token at the start of `buf`: `Ok(None)` if it is not all there yet, else the
/// token (ranges relative to `buf`) and its length in bytes.
fn parse_token(buf: &[u8]) -> Result<Option<(Token, usize)>> {
    let Some(line_end) = buf.iter().position(|&b| b == b'\r') else {
        return Ok(None);
    };
    if buf.len() < line_end + 2 {
        return Ok(None);
    }
    if buf[line_end + 1] != b'\n' {
        bail!("RESP line not ended by CRLF");
    }
    let Some(&kind) = buf.first() else { bail!("an empty RESP line") };
    let line = &buf[1..line_end];
    let header = line_end + 2;
    let number = || -> Result<i64> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad RESP number {:?}", String::from_utf8_lossy(line)))
    };
    let token = match kind {
        b'*' => match number()? {
            -1 => (Token::Nil, header),
            n => {
                (Token::Array(usize::try_from(n).context("a negative RESP array length")?), header)
            }
        },
        b'$' => match number()? {
            -1 => (Token::Nil, header),
            n => {
                let len = usize::try_from(n).context("a negative RESP bulk length")?;
                let total = header + len + 2;
                if buf.len() < total {
                    return Ok(None);
                }
                if &buf[header + len..total] != b"\r\n" {
                    bail!("RESP bulk string not ended by CRLF");
                }
                (Token::Bulk(header..header + len), total)
            }
        },
        b':' => (Token::Integer(number()?), header),
        b'+' => (Token::Simple(1..line_end), header),
        b'-' => (Token::Error(String::from_utf8_lossy(line).into_owned()), header),
        other => bail!("unexpected RESP type byte {:?}", other as char),
    };
    Ok(Some(token))
}

/// A connection to redis-server speaking RESP2.
pub struct RespConn {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    /// Received bytes; `consumed` of them have been handed out as tokens.
    received: BytesMut,
    consumed: usize,
    /// How long a read may wait for data before the run fails.
    read_timeout: Duration,
}

impl RespConn {
    pub async fn connect(server: &str, read_timeout: Duration) -> Result<RespConn> {
        let socket = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(server))
            .await
            .map_err(|_| anyhow!("connecting to redis-server at {server} timed out"))?
            .with_context(|| format!("cannot connect to redis-server at {server}"))?;
        socket.set_nodelay(true)?;
        let (reader, writer) = socket.into_split();
        Ok(RespConn {
            reader,
            writer,
            received: BytesMut::with_capacity(READ_CHUNK_BYTES),
            consumed: 0,
            read_timeout,
        })
    }

    pub async fn write_all(&mut self, commands: &[u8]) -> Result<()> {
        self.writer.write_all(commands).await.context("writing to redis-server failed")
    }

    /// The next token if it is already received, without waiting.
    pub fn try_token(&mut self) -> Result<Option<Token>> {
        let Some((token, len)) = parse_token(&self.received[self.consumed..])? else {
            return Ok(None);
        };
        let base = self.consumed;
        self.consumed += len;
        Ok(Some(match token {
            Token::Bulk(r) => Token::Bulk(base + r.start..base + r.end),
            Token::Simple(r) => Token::Simple(base + r.start..base + r.end),
            other => other,
        }))
    }

    /// Waits for more bytes from the server (cancel-safe: nothing is lost if dropped). Drops
    /// the bytes of tokens already handed out, so earlier ranges become invalid.
    pub async fn read_more(&mut self) -> Result<()> {
        self.received.advance(self.consumed);
        self.consumed = 0;
        self.received.reserve(READ_CHUNK_BYTES);
        let read =
            tokio::time::timeout(self.read_timeout, self.reader.read_buf(&mut self.received))
                .await
                .map_err(|_| {
                    anyhow!("redis-server sent nothing for {} s", self.read_timeout.as_secs())
                })?
                .context("reading from redis-server failed")?;
        if read == 0 {
            bail!("redis-server closed the connection");
        }
        Ok(())
    }

    /// The next token, waiting for it if needed.
    pub async fn token(&mut self) -> Result<Token> {
        loop {
            if let Some(token) = self.try_token()? {
                return Ok(token);
            }
            self.read_more().await?;
        }
    }

    /// The bytes of a `Bulk` or `Simple` token's range.
    pub fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.received[range]
    }

    /// The next token, which must be an array header; returns its length.
    pub async fn array(&mut self, what: &str) -> Result<usize> {
        match self.token().await? {
            Token::Array(n) => Ok(n),
            Token::Error(e) => bail!("{what}: redis-server replied {e}"),
            other => bail!("{what}: expected an array, got {other:?}"),
        }
    }

    /// The next token, which must be a bulk string; returns its range.
    pub async fn bulk(&mut self, what: &str) -> Result<Range<usize>> {
        match self.token().await? {
            Token::Bulk(range) => Ok(range),
            Token::Error(e) => bail!("{what}: redis-server replied {e}"),
            other => bail!("{what}: expected a bulk string, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_encoded_as_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"XADD", b"bench-0", b"*", b"d", b"hello"]);
        assert_eq!(
            out,
            b"*5\r\n$4\r\nXADD\r\n$7\r\nbench-0\r\n$1\r\n*\r\n$1\r\nd\r\n$5\r\nhello\r\n"
        );
        let mut out = Vec::new();
        push_decimal(&mut out, 0);
        push_decimal(&mut out, 1024);
        push_decimal(&mut out, usize::MAX);
        assert_eq!(out, format!("01024{}", usize::MAX).as_bytes());
    }

    #[test]
    fn tokens_are_taken_whole_or_not_at_all() {
        let reply = b"*2\r\n$15\r\n1700000000000-0\r\n*-1\r\n:42\r\n+OK\r\n$-1\r\n-ERR no\r\n";
        // Every prefix that cuts a token yields no token for it.
        let mut tokens = Vec::new();
        let mut pos = 0;
        for end in 0..=reply.len() {
            while let Some((token, len)) = parse_token(&reply[pos..end]).unwrap() {
                tokens.push((token, pos));
                pos += len;
            }
        }
        assert_eq!(pos, reply.len());
        let kinds: Vec<Token> = tokens.into_iter().map(|(t, _)| t).collect();
        assert_eq!(
            kinds,
            vec![
                Token::Array(2),
                Token::Bulk(5..20),
                Token::Nil,
                Token::Integer(42),
                Token::Simple(1..3),
                Token::Nil,
                Token::Error("ERR no".into()),
            ]
        );
    }

    #[test]
    fn malformed_replies_fail() {
        assert!(parse_token(b"$3\r\nabcd\r\n").is_err());
        assert!(parse_token(b"*x\r\n").is_err());
        assert!(parse_token(b"!3\r\n").is_err());
    }
}
