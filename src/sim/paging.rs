//! Short and empty pages. The clouds' list calls may return fewer items
//! than asked for, or none at all, and still hand out a next-page token:
//! EC2 says so of DescribeInstances' MaxResults, Compute Engine and ARM do
//! it when a backend shard answers late. A client that stops at the first
//! short page, or at an empty one, loses instances. The default world pages
//! this way, seeded so that a run is repeatable; `[paging] short_pages =
//! false` gives full pages (benchmarks measure against those).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Paging {
    pub short_pages: bool,
    /// Picks which pages are short, and how short.
    pub seed: u64,
}

impl Default for Paging {
    fn default() -> Paging {
        Paging { short_pages: true, seed: 0 }
    }
}

/// Where a page starts: after position `after` (a sequence number, or the
/// count of items already served); `after_empty` when the page served
/// there before was empty, so that this one is not and paging ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    pub after: u64,
    pub after_empty: bool,
}

impl Cursor {
    /// A cursor in the form [`Cursor::token`] writes.
    pub fn parse(text: &str) -> Option<Cursor> {
        let (after, after_empty) = match text.strip_suffix('e') {
            Some(after) => (after, true),
            None => (text, false),
        };
        Some(Cursor { after: after.parse().ok()?, after_empty })
    }

    pub fn token(self) -> String {
        format!("{}{}", self.after, if self.after_empty { "e" } else { "" })
    }

    /// The cursor of the page after an empty one served here.
    pub fn past_empty(self) -> Cursor {
        Cursor { after_empty: true, ..self }
    }
}

impl Paging {
    /// How many items the page at `cursor` holds when `limit` were asked
    /// for: all of them with full pages, else between none and `limit`.
    /// No limit (`usize::MAX`) means the call does not page.
    pub fn page_len(&self, cursor: Cursor, limit: usize) -> usize {
        if !self.short_pages || limit == usize::MAX || limit <= 1 {
            return limit;
        }
        let roll = splitmix64(self.seed ^ cursor.after.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        if !cursor.after_empty && roll.is_multiple_of(4) {
            return 0;
        }
        1 + (roll >> 8) as usize % limit
    }
}

impl Paging {
    /// The page at `cursor` of `items` (in ascending positions, each with
    /// its position), of at most `limit`, and the cursor of the next page
    /// if any item is left.
    pub fn page<T>(
        &self,
        cursor: Cursor,
        limit: usize,
        items: impl Iterator<Item = (u64, T)>,
    ) -> (Vec<T>, Option<Cursor>) {
        let mut items = items.peekable();
        let page: Vec<(u64, T)> = items.by_ref().take(self.page_len(cursor, limit)).collect();
        let next = match (page.last(), items.peek()) {
            (_, None) => None,
            (Some((position, _)), Some(_)) => Some(Cursor { after: *position, after_empty: false }),
            (None, Some(_)) => Some(cursor.past_empty()),
        };
        (page.into_iter().map(|(_, item)| item).collect(), next)
    }
}

/// A well-mixed 64-bit value from `x` (SplitMix64's output function).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_what_they_write_and_refuse_the_rest() {
        for cursor in [Cursor { after: 0, after_empty: false }, Cursor { after: 42, after_empty: true }] {
            assert_eq!(Cursor::parse(&cursor.token()), Some(cursor));
        }
        assert_eq!(Cursor::parse("x"), None);
        assert_eq!(Cursor::parse("e"), None);
        assert_eq!(Cursor::parse("-1"), None);
    }

    #[test]
    fn short_pages_hold_between_none_and_the_limit_and_never_two_empty_in_a_row() {
        let paging = Paging::default();
        let lengths: Vec<usize> =
            (0..200).map(|after| paging.page_len(Cursor { after, after_empty: false }, 50)).collect();
        assert!(lengths.iter().all(|&n| n <= 50));
        assert!(lengths.contains(&0), "some pages are empty");
        assert!(lengths.iter().any(|&n| n > 0 && n < 50), "some pages are short");
        for after in 0..200 {
            assert!(paging.page_len(Cursor { after, after_empty: true }, 50) > 0);
        }
        assert_eq!(Paging { short_pages: false, seed: 0 }.page_len(Cursor::default(), 50), 50);
        assert_eq!(paging.page_len(Cursor::default(), usize::MAX), usize::MAX);
    }

    #[test]
    fn paging_through_short_and_empty_pages_serves_every_item_once() {
        for seed in 0..20 {
            let paging = Paging { short_pages: true, seed };
            let items: Vec<u64> = (1..=137).map(|n| n * 3).collect();
            let (mut served, mut cursor, mut pages) = (Vec::new(), Some(Cursor::default()), 0);
            while let Some(at) = cursor {
                let (page, next) = paging.page(at, 10, items.iter().copied().filter(|&n| n > at.after).map(|n| (n, n)));
                served.extend(page);
                cursor = next;
                pages += 1;
                assert!(pages < 1000, "paging must end");
            }
            assert_eq!(served, items, "seed {seed}");
        }
    }

    #[test]
    fn the_seed_picks_other_pages() {
        let lengths = |seed| -> Vec<usize> {
            (0..50)
                .map(|after| Paging { short_pages: true, seed }.page_len(Cursor { after, after_empty: false }, 9))
                .collect()
        };
        assert_eq!(lengths(1), lengths(1));
        assert_ne!(lengths(1), lengths(2));
    }
}
