//! prost's codec with small buffers. tonic gives every call an 8 KiB
//! buffer to decode into and another to encode from, and keeps them for
//! the life of a stream: 16 KiB for each of the 11,500 agents' sessions,
//! which carry messages of a few hundred bytes. These start at 1 KiB and
//! grow for a larger message as tonic's do.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

fn buffers() -> BufferSettings {
    BufferSettings::new(1024, 32 * 1024)
}

#[derive(Debug, Clone, Default)]
pub struct LeanCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Codec for LeanCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(buffers())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(buffers())
    }
}
