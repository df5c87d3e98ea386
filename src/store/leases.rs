//! What open batches lease, as stretches of the seq axis.
//!
//! A batch records, besides its member list, the *pieces* it leased: each
//! piece is a seq range `[lo, hi]` and a set of triggers (a 15-bit mask).
//! A claim walks the account's queue in seq order and, in each stretch it
//! takes events from, takes every available event of the allowed triggers
//! between the first and the last one it takes; so an event is leased iff
//! a piece of an open batch covers its seq and its trigger. A claim then
//! needs only the open batches' pieces (a few per batch) to know where the
//! available events are, never the member lists: it skips leased stretches
//! by seeking in an index instead of reading every leased seq.
//!
//! An event that commits late (sequences commit out of order) with a seq
//! inside an open batch's piece is not a member of that batch and is not
//! deleted with it: it becomes available when the batch is closed or its
//! lease ends.

use serde::{Deserialize, Serialize};

use crate::domain::Trigger;

/// A set of triggers: bit i is `Trigger::ALL[i]`.
pub type Mask = u16;

pub const ALL: Mask = (1 << Trigger::ALL.len()) - 1;

pub fn bit(t: Trigger) -> Mask {
    let i = Trigger::ALL.iter().position(|x| *x == t).unwrap_or(0);
    1 << i
}

pub fn mask_of(triggers: &Option<Vec<Trigger>>) -> Mask {
    match triggers {
        None => ALL,
        Some(list) => list.iter().fold(0, |m, t| m | bit(*t)),
    }
}

pub fn triggers_in(mask: Mask) -> impl Iterator<Item = Trigger> {
    Trigger::ALL
        .into_iter()
        .enumerate()
        .filter(move |(i, _)| mask & (1 << i) != 0)
        .map(|(_, t)| t)
}

/// Leased: the events of `mask` with `lo <= seq <= hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece(pub i64, pub i64, pub Mask);

/// A stretch of the seq axis and the triggers available in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub lo: i64,
    pub hi: i64,
    pub allowed: Mask,
}

/// The stretches of `[from, ∞)` where events of `wanted` are not leased by
/// any of `pieces`, in seq order (stretches with nothing allowed are left
/// out; neighbours with the same allowed set are merged).
pub fn segments(pieces: &[Piece], wanted: Mask, from: i64) -> Vec<Segment> {
    // A sweep over the pieces' ends, counting how many pieces cover each
    // trigger at each point.
    let mut points: Vec<(i64, i32, Mask)> = Vec::with_capacity(pieces.len() * 2);
    for &Piece(lo, hi, m) in pieces {
        if hi < from || lo > hi {
            continue;
        }
        points.push((lo.max(from), 1, m));
        if hi < i64::MAX {
            points.push((hi + 1, -1, m));
        }
    }
    points.sort_unstable();
    let mut cover = [0i32; 16];
    let mut out: Vec<Segment> = Vec::new();
    let mut start = from;
    let push = |out: &mut Vec<Segment>, lo: i64, hi: i64, allowed: Mask| {
        if lo > hi || allowed == 0 {
            return;
        }
        match out.last_mut() {
            Some(last) if last.allowed == allowed && last.hi + 1 == lo => last.hi = hi,
            _ => out.push(Segment { lo, hi, allowed }),
        }
    };
    let excluded = |cover: &[i32; 16]| (0..16).filter(|i| cover[*i] > 0).fold(0 as Mask, |m, i| m | 1 << i);
    let mut i = 0;
    while i < points.len() {
        let at = points[i].0;
        push(&mut out, start, at - 1, wanted & !excluded(&cover));
        while i < points.len() && points[i].0 == at {
            let (_, d, m) = points[i];
            for (b, c) in cover.iter_mut().enumerate() {
                if m & (1 << b) != 0 {
                    *c += d;
                }
            }
            i += 1;
        }
        start = at;
    }
    push(&mut out, start, i64::MAX, wanted & !excluded(&cover));
    out
}

/// Whether an event (seq, trigger) is leased by one of `pieces`.
pub fn covered(pieces: &[Piece], seq: i64, trigger: Mask) -> bool {
    pieces
        .iter()
        .any(|&Piece(lo, hi, m)| lo <= seq && seq <= hi && m & trigger != 0)
}

/// The pieces of a batch recorded before pieces existed: runs of
/// consecutive member seqs, every trigger (exact: no other event can have
/// a seq between two consecutive integers).
pub fn runs(members: &[i64]) -> Vec<Piece> {
    let mut sorted = members.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<Piece> = Vec::new();
    for s in sorted {
        match out.last_mut() {
            Some(Piece(_, hi, _)) if *hi + 1 == s => *hi = s,
            _ => out.push(Piece(s, s, ALL)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Mask = 1 << 6;
    const O: Mask = 1 << 5;

    #[test]
    fn nothing_leased_is_one_open_stretch() {
        assert_eq!(
            segments(&[], ALL, 0),
            vec![Segment {
                lo: 0,
                hi: i64::MAX,
                allowed: ALL
            }]
        );
    }

    #[test]
    fn fully_leased_stretches_are_skipped_and_partial_ones_keep_the_rest() {
        let pieces = [Piece(10, 19, ALL), Piece(20, 29, C), Piece(40, 49, ALL)];
        assert_eq!(
            segments(&pieces, ALL, 0),
            vec![
                Segment {
                    lo: 0,
                    hi: 9,
                    allowed: ALL
                },
                Segment {
                    lo: 20,
                    hi: 29,
                    allowed: ALL & !C
                },
                Segment {
                    lo: 30,
                    hi: 39,
                    allowed: ALL
                },
                Segment {
                    lo: 50,
                    hi: i64::MAX,
                    allowed: ALL
                },
            ]
        );
        // Only CLICK wanted: the CLICK piece is a hole too; neighbours merge.
        assert_eq!(
            segments(&pieces, C, 0),
            vec![
                Segment {
                    lo: 0,
                    hi: 9,
                    allowed: C
                },
                Segment {
                    lo: 30,
                    hi: 39,
                    allowed: C
                },
                Segment {
                    lo: 50,
                    hi: i64::MAX,
                    allowed: C
                }
            ]
        );
        assert_eq!(
            segments(&pieces, O, 0),
            vec![
                Segment {
                    lo: 0,
                    hi: 9,
                    allowed: O
                },
                Segment {
                    lo: 20,
                    hi: 39,
                    allowed: O
                },
                Segment {
                    lo: 50,
                    hi: i64::MAX,
                    allowed: O
                }
            ]
        );
        assert_eq!(
            segments(&pieces, ALL, 45),
            vec![Segment {
                lo: 50,
                hi: i64::MAX,
                allowed: ALL
            }]
        );
    }

    #[test]
    fn coverage_and_runs() {
        let pieces = [Piece(10, 19, C)];
        assert!(covered(&pieces, 10, C) && covered(&pieces, 19, C));
        assert!(!covered(&pieces, 15, O) && !covered(&pieces, 20, C));
        assert_eq!(
            runs(&[5, 3, 4, 9, 10, 12]),
            vec![Piece(3, 5, ALL), Piece(9, 10, ALL), Piece(12, 12, ALL)]
        );
    }
}
