//! The memory of an ngx_wasm_module `shm_kv` zone: NGINX's slab allocator as
//! ngx_wasm_module uses it, so that a zone of a given size fills when a real
//! one would.
//!
//! From the sources (ngx_wasm_module `src/common/shm/ngx_wa_shm_kv.c` at
//! 3bed2783, NGINX `src/core/ngx_slab.c`), for 64-bit builds with 4 KiB
//! pages:
//!
//! - The zone starts with the slab pool header (200 bytes), 9 slot heads
//!   (24 bytes each) and 9 slot statistics (32 bytes each); then one 24-byte
//!   descriptor per page; the pages start at the next page boundary
//!   (`ngx_slab_init`). The store's own head (`ngx_wa_shm_kv_t`, 88 bytes, or
//!   232 with `eviction=slru`'s queues) is the zone's first allocation.
//! - A key/value pair is one allocation of `96 + key + value` bytes (the
//!   96-byte `ngx_wa_shm_kv_node_t`, then the whole key, then the value).
//! - Up to half a page, an allocation takes a chunk of the next power of two
//!   (at least 8 bytes) in a page of chunks of that size; a page is taken
//!   from the free pages when no page of that size has room, and given back
//!   when its last chunk is freed. A larger allocation takes whole pages (the
//!   model counts pages and ignores that they must be contiguous).
//! - A value rewritten no longer than the value the pair was allocated with
//!   stays in place; a longer one takes a new allocation (the old one is
//!   freed after).
//! - When an allocation fails: `eviction=lru` frees the least recently used
//!   pair and tries again; `eviction=slru` frees the least recently used pair
//!   of the same slot size first, then of larger sizes, then smaller;
//!   `eviction=none` fails the write (and ngx_wasm_module traps the filter).

/// NGINX's page size.
pub const PAGE_BYTES: usize = 4096;
/// `sizeof(ngx_wa_shm_kv_node_t)`.
pub const NODE_BYTES: usize = 96;
/// Pool header, slot heads and slot statistics.
const POOL_HEADER_BYTES: usize = 200 + 9 * 24 + 9 * 32;
/// `sizeof(ngx_slab_page_t)`.
const PAGE_DESCRIPTOR_BYTES: usize = 24;
/// The smallest zone `shm_kv` accepts (`NGX_WA_SHM_MIN_SIZE`).
pub const MIN_ZONE_BYTES: usize = 3 * PAGE_BYTES;
const MIN_SHIFT: u32 = 3;
const PAGE_SHIFT: u32 = 12;
/// Slots of sizes 8 .. 2048.
const SLOTS: usize = (PAGE_SHIFT - MIN_SHIFT) as usize;

/// What a full zone does; `shm_kv <name> <size> eviction=...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Eviction {
    /// Frees the least recently used pair until the write fits.
    Lru,
    /// ngx_wasm_module's default: frees the least recently used pair of the
    /// write's slot size first, then of larger, then of smaller sizes.
    #[default]
    Slru,
    /// Fails the write.
    None,
}

/// Where an allocation lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Allocation {
    /// A chunk in page `page` of slot `slot` (chunk size `8 << slot`).
    Chunk { slot: usize, page: usize },
    /// `pages` whole pages.
    Pages { pages: usize },
}

/// The slab pages of one zone.
#[derive(Clone, Debug)]
pub(crate) struct Zone {
    total_pages: usize,
    free_pages: usize,
    /// Per slot, the chunks in use in each of its pages; `None` is a page
    /// index no longer (or not yet) used, to be reused.
    slots: Vec<Vec<Option<usize>>>,
}

/// The slot of an allocation of `size` bytes, or `None` for whole pages.
pub(crate) fn slot_of(size: usize) -> Option<usize> {
    if size > PAGE_BYTES / 2 {
        return None;
    }
    let chunk = size.next_power_of_two().max(1 << MIN_SHIFT);
    Some((chunk.trailing_zeros() - MIN_SHIFT) as usize)
}

/// The SLRU queue an allocation of `size` bytes goes to.
pub(crate) fn queue_of(size: usize) -> usize {
    slot_of(size).unwrap_or(SLOTS)
}

impl Zone {
    /// A zone of `bytes`, its store head already allocated (as
    /// `ngx_wa_shm_kv_init` does); `None` if it is below the minimum size.
    pub(crate) fn new(bytes: usize, eviction: Eviction) -> Option<Zone> {
        if bytes < MIN_ZONE_BYTES {
            return None;
        }
        let after_header = bytes - POOL_HEADER_BYTES;
        let mut pages = after_header / (PAGE_BYTES + PAGE_DESCRIPTOR_BYTES);
        let start =
            (POOL_HEADER_BYTES + pages * PAGE_DESCRIPTOR_BYTES).div_ceil(PAGE_BYTES) * PAGE_BYTES;
        let fit = bytes.saturating_sub(start) / PAGE_BYTES;
        pages = pages.min(fit);
        let mut zone = Zone {
            total_pages: pages,
            free_pages: pages,
            slots: vec![Vec::new(); SLOTS],
        };
        let head = match eviction {
            Eviction::Slru => 72 + (SLOTS + 1) * 16,
            Eviction::Lru | Eviction::None => 88,
        };
        zone.allocate(head)?;
        Some(zone)
    }

    /// Allocates `size` bytes, or `None` if no page is free for it.
    pub(crate) fn allocate(&mut self, size: usize) -> Option<Allocation> {
        let Some(slot) = slot_of(size) else {
            let pages = size.div_ceil(PAGE_BYTES);
            if pages > self.free_pages {
                return None;
            }
            self.free_pages -= pages;
            return Some(Allocation::Pages { pages });
        };
        let per_page = PAGE_BYTES >> (slot as u32 + MIN_SHIFT);
        let pages = &mut self.slots[slot];
        if let Some(page) = pages
            .iter()
            .position(|used| used.is_some_and(|used| used < per_page))
        {
            pages[page] = pages[page].map(|used| used + 1);
            return Some(Allocation::Chunk { slot, page });
        }
        if self.free_pages == 0 {
            return None;
        }
        self.free_pages -= 1;
        let page = match pages.iter().position(Option::is_none) {
            Some(page) => {
                pages[page] = Some(1);
                page
            }
            None => {
                pages.push(Some(1));
                pages.len() - 1
            }
        };
        Some(Allocation::Chunk { slot, page })
    }

    /// Frees an allocation; a page whose last chunk goes back to the pool.
    pub(crate) fn free(&mut self, allocation: Allocation) {
        match allocation {
            Allocation::Pages { pages } => self.free_pages += pages,
            Allocation::Chunk { slot, page } => {
                let Some(used) = self.slots.get_mut(slot).and_then(|p| p.get_mut(page)) else {
                    return;
                };
                *used = match *used {
                    Some(1) | None => {
                        self.free_pages += 1;
                        None
                    }
                    Some(n) => Some(n - 1),
                };
            }
        }
    }

    /// Pages in use (by pairs and the store head).
    pub(crate) fn used_pages(&self) -> usize {
        self.total_pages - self.free_pages
    }

    /// Pages the zone has.
    pub(crate) fn total_pages(&self) -> usize {
        self.total_pages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_take_power_of_two_chunks_or_pages() {
        assert_eq!(slot_of(1), Some(0));
        assert_eq!(slot_of(96 + 30 + 98), Some(5), "256-byte chunks");
        assert_eq!(slot_of(2048), Some(8));
        assert_eq!(slot_of(2049), None);
    }

    #[test]
    fn a_zone_counts_its_pages_after_its_header_and_descriptors() {
        // 1 MiB: (1,048,576 - 704) / 4,120 = 254 pages; their descriptors end
        // at 6,800 bytes, so pages start at 8,192 and 254 fit.
        let zone = Zone::new(1 << 20, Eviction::Lru).unwrap();
        assert_eq!(zone.total_pages(), 254);
        assert_eq!(zone.used_pages(), 1, "the store head");
        assert!(Zone::new(MIN_ZONE_BYTES - 1, Eviction::Lru).is_none());
    }

    #[test]
    fn chunks_share_pages_and_a_page_is_freed_with_its_last_chunk() {
        let mut zone = Zone::new(64 * PAGE_BYTES, Eviction::None).unwrap();
        let base = zone.used_pages();
        let chunks: Vec<_> = (0..17).map(|_| zone.allocate(200).unwrap()).collect();
        assert_eq!(zone.used_pages(), base + 2, "16 chunks of 256 a page");
        zone.free(chunks[16]);
        assert_eq!(zone.used_pages(), base + 1);
        let big = zone.allocate(5000).unwrap();
        assert_eq!(big, Allocation::Pages { pages: 2 });
        assert_eq!(zone.used_pages(), base + 3);
        zone.free(big);
        assert_eq!(zone.used_pages(), base + 1);
    }

    #[test]
    fn a_full_zone_refuses_allocations() {
        let mut zone = Zone::new(MIN_ZONE_BYTES, Eviction::None).unwrap();
        let free = zone.total_pages() - zone.used_pages();
        for _ in 0..free {
            assert!(zone.allocate(4096).is_some());
        }
        assert!(zone.allocate(4096).is_none());
    }
}
