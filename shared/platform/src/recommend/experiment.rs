//! Fixed-weight A/B assignment: a stable hash of experiment name and user (or client) id.

use sha2::{Digest, Sha256};

use crate::config::VariantConfig;

/// The stable A/B assignment: a uniform number in `[0, 1)` from experiment and id.
pub fn assignment_point(experiment: &str, id: &str) -> f64 {
    let mut h = Sha256::new();
    h.update(experiment.as_bytes());
    h.update([0u8]);
    h.update(id.as_bytes());
    let d = h.finalize();
    let x = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The variant of `id` among weighted variants (stable across calls and instances).
pub fn assign_variant<'a>(
    experiment: &str,
    variants: &'a [VariantConfig],
    id: &str,
) -> &'a VariantConfig {
    let total: f64 = variants.iter().map(|v| v.weight).sum();
    let x = assignment_point(experiment, id) * total;
    let mut acc = 0.0;
    for v in variants {
        acc += v.weight;
        if x < acc {
            return v;
        }
    }
    variants.last().expect("validated: at least one variant")
}
