//! The size of the ngx_wasm_module `shm_kv` zone that holds a configuration's tables.
//!
//! Derived from the sources, not measured: ngx_wasm_module (`src/common/shm/ngx_wa_shm_kv.c`,
//! at 3bed2783) stores each key/value pair as one slab allocation of
//! `sizeof(ngx_wa_shm_kv_node_t) + key + value`, the node being 96 bytes on 64-bit builds
//! (`ngx_str_node_t` 56, `ngx_str_t` value 16, `uint32_t` cas padded to 8, `ngx_queue_t` 16),
//! and the key being the whole name including `sluice/`. NGINX's slab allocator
//! (`src/core/ngx_slab.c`) serves a request of up to half a page from a slot of the next power
//! of two (at least 8 bytes), packing `4096 / chunk` chunks into a page, and a larger request
//! with whole pages. A zone of `size` bytes starts with the pool header (200 bytes), 9 slot
//! heads (24 bytes each) and 9 slot statistics (32 bytes each), then one 24-byte page
//! descriptor per page, then the pages themselves from the next page boundary.
//!
//! Because sluice writes every bucket at its full size when the VM is configured (see
//! [`crate::table`]), the zone holds the same pages from start-up on: the size given here is
//! what the zone needs at start-up and forever after.

use crate::table::RuleTable;

/// NGINX's page size on the platforms ngx_wasm_module supports.
pub const PAGE_BYTES: u64 = 4096;
/// `sizeof(ngx_wa_shm_kv_node_t)` on 64-bit builds.
pub const NODE_BYTES: u64 = 96;
/// `sizeof(ngx_slab_page_t)`: one per page of the zone.
pub const PAGE_DESCRIPTOR_BYTES: u64 = 24;
/// `sizeof(ngx_slab_pool_t)` plus 9 slot heads and 9 slot statistics (`ngx_slab_init`).
pub const POOL_HEADER_BYTES: u64 = 200 + 9 * 24 + 9 * 32;
/// The largest request served from a slot; larger ones take whole pages.
const SLAB_MAX_BYTES: u64 = PAGE_BYTES / 2;
/// The smallest slot (`min_shift = 3`).
const SLAB_MIN_BYTES: u64 = 8;

/// The slab bytes one entry of `key_bytes` and `value_bytes` takes: the node, key and value
/// rounded up to the slot size, or to whole pages.
pub fn entry_bytes(key_bytes: u64, value_bytes: u64) -> u64 {
    let size = NODE_BYTES
        .saturating_add(key_bytes)
        .saturating_add(value_bytes);
    if size <= SLAB_MAX_BYTES {
        size.next_power_of_two().max(SLAB_MIN_BYTES)
    } else {
        size.div_ceil(PAGE_BYTES).saturating_mul(PAGE_BYTES)
    }
}

/// The pages `count` entries of `entry` bytes (from [`entry_bytes`]) occupy.
pub fn pages_for(count: u64, entry: u64) -> u64 {
    if entry <= SLAB_MAX_BYTES {
        count.div_ceil(PAGE_BYTES / entry.max(1))
    } else {
        count.saturating_mul(entry / PAGE_BYTES)
    }
}

/// The pages a table occupies: every bucket at its full size, each key as long as the
/// longest (so the figure is an upper bound by at most one slot size per bucket).
pub fn table_pages(table: &RuleTable<'_>) -> u64 {
    let entry = entry_bytes(table.max_key_bytes(), table.max_bucket_bytes());
    pages_for(u64::from(table.bucket_count()), entry)
}

/// The zone size (bytes, a multiple of the page size) that holds `pages` pages of entries
/// plus the zone's own: one page for the store's head (`ngx_wa_shm_kv_t`, up to 256 bytes)
/// and one for the seed. Solves `ngx_slab_init`'s layout for the smallest zone with that
/// many usable pages.
pub fn zone_bytes_for_pages(pages: u64) -> u64 {
    let pages = pages.saturating_add(2);
    let descriptors = POOL_HEADER_BYTES.saturating_add(pages.saturating_mul(PAGE_DESCRIPTOR_BYTES));
    descriptors
        .div_ceil(PAGE_BYTES)
        .saturating_add(pages)
        .saturating_mul(PAGE_BYTES)
}

/// The zone size that holds `tables` (one configuration's, or several sharing the zone).
pub fn zone_bytes<'a>(tables: impl IntoIterator<Item = RuleTable<'a>>) -> u64 {
    let pages = tables
        .into_iter()
        .map(|table| table_pages(&table))
        .fold(0u64, u64::saturating_add);
    zone_bytes_for_pages(pages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::{Algorithm, Limit};
    use crate::quota::Quota;

    #[test]
    fn entries_round_up_to_a_power_of_two_or_to_pages() {
        assert_eq!(entry_bytes(30, 98), 256);
        assert_eq!(entry_bytes(30, 130), 256);
        assert_eq!(entry_bytes(31, 130), 512);
        assert_eq!(entry_bytes(0, 0), 128);
        assert_eq!(entry_bytes(0, 1952), 2048);
        assert_eq!(entry_bytes(0, 1953), 4096);
        assert_eq!(entry_bytes(0, 8001), 8192);
        assert_eq!(pages_for(16_384, 256), 1024);
        assert_eq!(pages_for(16_385, 256), 1025);
        assert_eq!(pages_for(3, 8192), 6);
    }

    #[test]
    fn a_zone_has_room_for_its_descriptors_and_aligned_pages() {
        // 1000 pages + 2: 704 + 1002 × 24 = 24,752 bytes of header, 7 pages.
        assert_eq!(zone_bytes_for_pages(1000), (1002 + 7) * PAGE_BYTES);
    }

    #[test]
    fn the_default_sliding_window_table_needs_its_buckets_in_512_byte_chunks() {
        let limit = Limit::new(
            Algorithm::SlidingWindow,
            Quota::new(100, 10_000_000_000, 100).unwrap(),
        );
        let table = RuleTable::new("per-client", limit, 65_536);
        assert_eq!(table.max_bucket_bytes(), 162);
        assert_eq!(table_pages(&table), 16_384 / 8);
    }
}
