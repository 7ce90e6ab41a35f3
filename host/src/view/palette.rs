//! 256-colour palettes for PNG figures. A figure is mostly white, a few line colours, grey
//! grid and text; only anti-aliased edges (and the step colour scale) add more colours. An
//! indexed PNG is a third of the size of an RGB one, which is what keeps a report with every
//! experiment's transfer and transient figure small enough to mail.
//!
//! The palette is the 256 most frequent colours, so the background, every line colour and
//! the text stay exact; each rarer colour (an edge pixel) takes the nearest palette colour.
//! Deterministic (ties broken by colour value), and lossless for figures with 256 colours
//! or fewer.

use std::collections::HashMap;

/// The most colours an 8-bit indexed PNG holds.
const SIZE: usize = 256;

/// An indexed image: the palette as RGB triples and one palette index per pixel.
pub struct Indexed {
    pub palette: Vec<u8>,
    pub indices: Vec<u8>,
}

/// Indexes `rgb` (3 bytes per pixel).
pub fn index(rgb: &[u8]) -> Indexed {
    let mut counts: HashMap<[u8; 3], u32> = HashMap::new();
    for p in rgb.chunks_exact(3) {
        *counts.entry([p[0], p[1], p[2]]).or_default() += 1;
    }
    let mut by_count: Vec<([u8; 3], u32)> = counts.into_iter().collect();
    by_count.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let kept: Vec<[u8; 3]> = by_count.iter().take(SIZE).map(|c| c.0).collect();
    let mut slot: HashMap<[u8; 3], u8> = kept
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, i as u8))
        .collect();
    for (c, _) in by_count.iter().skip(SIZE) {
        slot.insert(*c, nearest(&kept, *c));
    }
    Indexed {
        palette: kept.iter().flatten().copied().collect(),
        indices: rgb
            .chunks_exact(3)
            .map(|p| slot[&[p[0], p[1], p[2]]])
            .collect(),
    }
}

/// The palette entry closest to `c`, by squared distance with the eye's weights for red,
/// green and blue (2, 4, 3: green differences show most).
fn nearest(palette: &[[u8; 3]], c: [u8; 3]) -> u8 {
    let d = |p: &[u8; 3]| {
        let e = |i: usize| (i32::from(p[i]) - i32::from(c[i])).pow(2);
        2 * e(0) + 4 * e(1) + 3 * e(2)
    };
    let best = (0..palette.len())
        .min_by_key(|&i| d(&palette[i]))
        .unwrap_or(0);
    best as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixels(colors: &[[u8; 3]]) -> Vec<u8> {
        colors.iter().flatten().copied().collect()
    }

    fn decoded(ix: &Indexed) -> Vec<[u8; 3]> {
        ix.indices
            .iter()
            .map(|&i| {
                let i = usize::from(i) * 3;
                [ix.palette[i], ix.palette[i + 1], ix.palette[i + 2]]
            })
            .collect()
    }

    #[test]
    fn few_colours_are_kept_exactly() {
        let img = [[255, 255, 255], [31, 119, 180], [255, 255, 255], [0, 0, 0]];
        let ix = index(&pixels(&img));
        assert_eq!(ix.palette.len(), 3 * 3);
        assert_eq!(decoded(&ix), img);
        // The most frequent colour (the background) is entry 0.
        assert_eq!(&ix.palette[..3], &[255, 255, 255]);
    }

    #[test]
    fn rare_colours_take_the_nearest_frequent_one() {
        // 300 distinct colours: the grey ramp 0..=255 twice (frequent), then 44 rare reds.
        let mut img: Vec<[u8; 3]> = Vec::new();
        for _ in 0..2 {
            img.extend((0..=255u8).map(|g| [g, g, g]));
        }
        img.extend((0..44u8).map(|r| [200 + r, 10, 10]));
        let ix = index(&pixels(&img));
        assert_eq!(ix.palette.len(), SIZE * 3);
        let out = decoded(&ix);
        assert_eq!(&out[..512], &img[..512], "the frequent colours are exact");
        for (got, want) in out[512..].iter().zip(&img[512..]) {
            assert_eq!(got[0], got[1], "{want:?} became {got:?}: not a grey");
            // Nearest by the weights: g = (2r + 7·10) / 9, 52 to 62 for r = 200 to 243.
            assert!((52..=62).contains(&got[0]), "{want:?} became {got:?}");
        }
        assert_eq!(
            index(&pixels(&img)).indices,
            ix.indices,
            "not deterministic"
        );
    }
}
