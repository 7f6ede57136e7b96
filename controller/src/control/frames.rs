//! Reading and writing length-prefixed JSON frames on quinn streams.

use quinn::{ReadExactError, RecvStream, SendStream};
use serde::de::DeserializeOwned;
use serde::Serialize;
pub use warren_proto::control::MAX_NODE_FRAME;
use warren_proto::control::{self, FrameError, NodeMessage};

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameIoError {
    #[error("stream closed")]
    Closed,
    #[error("stream closed in the middle of a frame")]
    Truncated,
    #[error("read failed: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("write failed: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("frame of {0} bytes is larger than the limit")]
    TooLarge(usize),
    #[error("{0}")]
    Frame(#[from] FrameError),
}

/// Reads one node message; `Closed` on a clean end of stream between frames.
pub async fn read_node_message(recv: &mut RecvStream) -> Result<NodeMessage, FrameIoError> {
    read_message(recv, MAX_NODE_FRAME).await
}

/// Reads one message of at most `limit` bytes; `Closed` on a clean end of
/// stream between frames.
pub async fn read_message<T: DeserializeOwned>(
    recv: &mut RecvStream,
    limit: usize,
) -> Result<T, FrameIoError> {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(0)) => return Err(FrameIoError::Closed),
        Err(ReadExactError::FinishedEarly(_)) => return Err(FrameIoError::Truncated),
        Err(ReadExactError::ReadError(e)) => return Err(e.into()),
    }
    let len = control::frame_len(prefix)?;
    if len > limit {
        return Err(FrameIoError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    match recv.read_exact(&mut body).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(_)) => return Err(FrameIoError::Truncated),
        Err(ReadExactError::ReadError(e)) => return Err(e.into()),
    }
    Ok(control::decode_frame(&body)?)
}

pub async fn write_message<T: Serialize>(
    send: &mut SendStream,
    message: &T,
) -> Result<(), FrameIoError> {
    let frame = control::encode_frame(message)?;
    send.write_all(&frame).await?;
    Ok(())
}

/// Writes a frame already encoded (length prefix and JSON).
pub async fn write_frame(send: &mut SendStream, frame: &[u8]) -> Result<(), FrameIoError> {
    send.write_all(frame).await?;
    Ok(())
}
