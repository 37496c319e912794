//! Keys and the order in which requests present them.

/// The distinct keys: IPv4 client addresses as text, as the filter keys a request by client IP.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<Vec<u8>>,
}

impl KeySet {
    /// `count` distinct addresses, `10.0.0.0` onwards.
    pub fn addresses(count: usize) -> KeySet {
        let keys = (0..count)
            .map(|i| {
                let [_, b, c, d] = (i as u32).to_be_bytes();
                format!("10.{b}.{c}.{d}").into_bytes()
            })
            .collect();
        KeySet { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn get(&self, index: usize) -> &[u8] {
        &self.keys[index % self.keys.len()]
    }

    /// The key as an owned vector, the key type governor is given.
    pub fn get_owned(&self, index: usize) -> &Vec<u8> {
        &self.keys[index % self.keys.len()]
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.keys.iter().map(Vec::as_slice)
    }
}

/// Which key each request presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    /// Every request has the same key.
    HotKey,
    /// Each request has one of `keys` keys, uniformly at random.
    Uniform { keys: usize },
}

impl Distribution {
    pub fn name(&self) -> String {
        match self {
            Distribution::HotKey => "1 hot key".to_string(),
            Distribution::Uniform { keys } => format!("{keys} keys uniform"),
        }
    }

    /// How many distinct keys requests draw from.
    pub fn key_count(&self) -> usize {
        match self {
            Distribution::HotKey => 1,
            Distribution::Uniform { keys } => *keys,
        }
    }

    /// A fixed pseudo-random sequence of `length` key indices (the same for every
    /// contender), generated before timing starts.
    pub fn sequence(&self, length: usize, seed: u64) -> Vec<u32> {
        match self {
            Distribution::HotKey => vec![0; length],
            Distribution::Uniform { keys } => {
                let mut state = seed | 1;
                (0..length)
                    .map(|_| {
                        // xorshift64*
                        state ^= state >> 12;
                        state ^= state << 25;
                        state ^= state >> 27;
                        let draw = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
                        ((u128::from(draw) * *keys as u128) >> 64) as u32
                    })
                    .collect()
            }
        }
    }
}
