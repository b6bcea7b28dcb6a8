//! Choosing an algorithm and its parameters by name, as config files and `nectar eval
//! --algo NAME --param KEY=VALUE` do, and holding any fitted model behind one type.

use serde::{Deserialize, Serialize};

use super::als::{AlsModel, AlsParams, AlsValidParams, Confidence};
use super::item_knn::{ItemKnnModel, ItemKnnParams, ItemKnnValidParams, Weighting};
use super::mf::{MfModel, MfParams, MfValidParams};
use super::popular::{
    PopularParams, PopularValidParams, PopularityModel, TrendingParams, TrendingValidParams,
};
use super::Recommender;
use crate::error::ModelError;
use crate::interactions::{Interactions, ValueMode};

/// The algorithm names accepted by [`AlgoSpec::parse`].
pub const ALGORITHMS: [&str; 5] = ["popular", "trending", "item_knn", "als", "mf"];

/// An algorithm with validated parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AlgoSpec {
    /// Interaction counts.
    Popular(PopularValidParams),
    /// Time-decayed counts.
    Trending(TrendingValidParams),
    /// Item-to-item neighbours.
    ItemKnn(ItemKnnValidParams),
    /// Implicit ALS.
    Als(AlsValidParams),
    /// Biased MF for ratings.
    Mf(MfValidParams),
}

fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ModelError> {
    v.parse()
        .map_err(|_| ModelError::param(name, format!("cannot parse `{v}`")))
}

fn unknown(algo: &str, name: &str) -> ModelError {
    ModelError::param(name, format!("not a parameter of `{algo}`"))
}

impl AlgoSpec {
    /// Parses an algorithm name and `(name, value)` parameters (unknown names are errors).
    ///
    /// - `popular`: none.
    /// - `trending`: `half_life_hours`, `anchor_ms`.
    /// - `item_knn`: `weighting` (`bm25`|`cosine`), `k`, `k1`, `b`.
    /// - `als`: `factors`, `regularization`, `alpha`, `iterations`, `cg_steps`, `seed`,
    ///   `confidence` (`binary`|`rating`).
    /// - `mf`: `factors`, `epochs`, `lr`, `reg`, `init_std`, `seed`, `min_rating`,
    ///   `max_rating`.
    pub fn parse(algo: &str, params: &[(String, String)]) -> Result<Self, ModelError> {
        match algo {
            "popular" => {
                if let Some((k, _)) = params.first() {
                    return Err(unknown(algo, k));
                }
                Ok(AlgoSpec::Popular(PopularParams::new().check()?))
            }
            "trending" => {
                let mut p = TrendingParams::new();
                for (k, v) in params {
                    p = match k.as_str() {
                        "half_life_hours" => p.half_life_hours(num(k, v)?),
                        "anchor_ms" => p.anchor_ms(Some(num(k, v)?)),
                        _ => return Err(unknown(algo, k)),
                    };
                }
                Ok(AlgoSpec::Trending(p.check()?))
            }
            "item_knn" => {
                let (mut cosine, mut k1, mut b, mut kk) = (false, 1.2f32, 0.75f32, 100usize);
                for (k, v) in params {
                    match k.as_str() {
                        "weighting" => {
                            cosine = match v.as_str() {
                                "cosine" => true,
                                "bm25" => false,
                                _ => return Err(ModelError::param(k, "bm25 or cosine")),
                            }
                        }
                        "k" => kk = num(k, v)?,
                        "k1" => k1 = num(k, v)?,
                        "b" => b = num(k, v)?,
                        _ => return Err(unknown(algo, k)),
                    }
                }
                let w = if cosine {
                    Weighting::Cosine
                } else {
                    Weighting::Bm25 { k1, b }
                };
                Ok(AlgoSpec::ItemKnn(
                    ItemKnnParams::new().weighting(w).k(kk).check()?,
                ))
            }
            "als" => {
                let mut p = AlsParams::new();
                for (k, v) in params {
                    p = match k.as_str() {
                        "factors" => p.factors(num(k, v)?),
                        "regularization" => p.regularization(num(k, v)?),
                        "alpha" => p.alpha(num(k, v)?),
                        "iterations" => p.iterations(num(k, v)?),
                        "cg_steps" => p.cg_steps(num(k, v)?),
                        "seed" => p.seed(num(k, v)?),
                        "confidence" => p.confidence(match v.as_str() {
                            "binary" => Confidence::Binary,
                            "rating" | "value" => Confidence::Value,
                            _ => return Err(ModelError::param(k, "binary or rating")),
                        }),
                        _ => return Err(unknown(algo, k)),
                    };
                }
                Ok(AlgoSpec::Als(p.check()?))
            }
            "mf" => {
                let mut p = MfParams::new();
                let (mut lo, mut hi) = (None, None);
                for (k, v) in params {
                    p = match k.as_str() {
                        "factors" => p.factors(num(k, v)?),
                        "epochs" => p.epochs(num(k, v)?),
                        "lr" => p.lr(num(k, v)?),
                        "reg" => p.reg(num(k, v)?),
                        "init_std" => p.init_std(num(k, v)?),
                        "seed" => p.seed(num(k, v)?),
                        "min_rating" => {
                            lo = Some(num::<f32>(k, v)?);
                            p
                        }
                        "max_rating" => {
                            hi = Some(num::<f32>(k, v)?);
                            p
                        }
                        _ => return Err(unknown(algo, k)),
                    };
                }
                let p = match (lo, hi) {
                    (Some(l), Some(h)) => p.rating_range(Some((l, h))),
                    (None, None) => p,
                    _ => {
                        return Err(ModelError::param(
                            "min_rating",
                            "give both min_rating and max_rating",
                        ))
                    }
                };
                Ok(AlgoSpec::Mf(p.check()?))
            }
            _ => Err(ModelError::param(
                "algo",
                format!(
                    "unknown algorithm `{algo}` (one of {})",
                    ALGORITHMS.join(", ")
                ),
            )),
        }
    }

    /// How the training matrix must be built for this algorithm: ratings (summed values) for
    /// `mf` and rating-confidence ALS, binary otherwise.
    pub fn value_mode(&self) -> ValueMode {
        match self {
            AlgoSpec::Mf(_) => ValueMode::Sum,
            AlgoSpec::Als(p) if p.params_confidence() == Confidence::Value => ValueMode::Sum,
            _ => ValueMode::Binary,
        }
    }

    /// Whether the model predicts ratings (RMSE/MAE apply).
    pub fn predicts_ratings(&self) -> bool {
        matches!(self, AlgoSpec::Mf(_))
    }

    /// Fits the model.
    pub fn fit(&self, data: &Interactions) -> Result<FittedModel, ModelError> {
        Ok(match self {
            AlgoSpec::Popular(p) => FittedModel::Popularity(p.fit(data)?),
            AlgoSpec::Trending(p) => FittedModel::Popularity(p.fit(data)?),
            AlgoSpec::ItemKnn(p) => FittedModel::ItemKnn(p.fit(data)?),
            AlgoSpec::Als(p) => FittedModel::Als(p.fit(data)?),
            AlgoSpec::Mf(p) => FittedModel::Mf(p.fit(data)?),
        })
    }
}

/// Any fitted model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FittedModel {
    /// Popular or trending.
    Popularity(PopularityModel),
    /// Item-to-item.
    ItemKnn(ItemKnnModel),
    /// Implicit ALS.
    Als(AlsModel),
    /// Biased MF.
    Mf(MfModel),
}

impl FittedModel {
    /// The model as a [`Recommender`].
    pub fn as_recommender(&self) -> &dyn Recommender {
        match self {
            FittedModel::Popularity(m) => m,
            FittedModel::ItemKnn(m) => m,
            FittedModel::Als(m) => m,
            FittedModel::Mf(m) => m,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parses_names_and_rejects_unknowns() {
        let s = AlgoSpec::parse("als", &kv(&[("factors", "8"), ("confidence", "rating")])).unwrap();
        assert_eq!(s.value_mode(), ValueMode::Sum);
        let s = AlgoSpec::parse("als", &kv(&[("factors", "8")])).unwrap();
        assert_eq!(s.value_mode(), ValueMode::Binary);
        assert!(AlgoSpec::parse("als", &kv(&[("factor", "8")])).is_err());
        assert!(AlgoSpec::parse("als", &kv(&[("factors", "x")])).is_err());
        assert!(AlgoSpec::parse("item_knn", &kv(&[("weighting", "cosine"), ("k", "5")])).is_ok());
        assert!(AlgoSpec::parse("mf", &kv(&[("min_rating", "1")])).is_err());
        assert!(AlgoSpec::parse("nope", &[]).is_err());
        assert!(AlgoSpec::parse("mf", &[]).unwrap().predicts_ratings());
    }
}
