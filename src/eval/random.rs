//! The laws of a spec's random tensors in one evaluation: every element's
//! distribution with its parameters evaluated, and checked against their
//! domains. A parameter out of its domain is an error naming the element
//! and the value, never a clamp.

use rand_chacha::ChaCha8Rng;

use super::tape::RandomElement;
use super::{EvalError, Evaluation, Frame, distribution, format_value};
use crate::analysis::program::{DistributionKind, TensorId};

/// One element's distribution, with its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Law {
    pub kind: DistributionKind,
    params: [f64; 2],
}

impl Law {
    pub fn params(&self) -> &[f64] {
        let n = self.kind.parameters().len().min(self.params.len());
        &self.params[..n]
    }

    #[inline]
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> f64 {
        distribution::sample(self.kind, self.params(), rng)
    }

    /// Fills `out` with independent draws, the distribution matched once.
    pub fn fill(&self, rng: &mut ChaCha8Rng, out: &mut [f64]) {
        use rand::RngExt;
        let p = self.params;
        match self.kind {
            DistributionKind::Bernoulli => {
                out.iter_mut()
                    .for_each(|x| *x = f64::from(u8::from(rng.random::<f64>() < p[0])));
            }
            DistributionKind::Uniform => {
                out.iter_mut()
                    .for_each(|x| *x = p[0] + (p[1] - p[0]) * rng.random::<f64>());
            }
            _ => out.iter_mut().for_each(|x| *x = self.sample(rng)),
        }
    }

    /// The outcomes with their probabilities where there are finitely many
    /// (a degenerate `uniform(c, c)` or `normal(c, 0)` is the point c).
    pub fn support(&self) -> Option<Vec<(f64, f64)>> {
        match (self.kind, self.params()) {
            (DistributionKind::Uniform, &[lo, hi]) if lo == hi => Some(vec![(lo, 1.0)]),
            (DistributionKind::Normal, &[mean, 0.0]) => Some(vec![(mean, 1.0)]),
            (kind, params) => distribution::finite_support(kind, params),
        }
    }

    /// The smallest interval holding every outcome (infinite for a normal).
    pub fn range(&self) -> (f64, f64) {
        match (self.kind, self.params()) {
            (DistributionKind::Bernoulli, _) => (0.0, 1.0),
            (DistributionKind::Rademacher, _) => (-1.0, 1.0),
            (DistributionKind::Uniform, &[lo, hi]) => (lo, hi),
            (DistributionKind::Normal, &[mean, 0.0]) => (mean, mean),
            _ => (f64::NEG_INFINITY, f64::INFINITY),
        }
    }

    /// `bernoulli(0.25)`: the distribution with its parameter values.
    pub fn describe(&self) -> String {
        let params: Vec<String> = self.params().iter().map(|&p| format_value(p)).collect();
        format!("{}({})", self.kind.name(), params.join(", "))
    }
}

/// The laws of every element of every random tensor, by [`TensorId`] and
/// row-major offset.
#[derive(Clone, Debug, Default)]
pub struct Laws {
    tensors: Vec<Vec<Law>>,
}

impl Laws {
    /// Evaluates every parameter at every element of every random tensor.
    pub fn of(evaluation: &Evaluation<'_, f64>) -> Result<Laws, Box<EvalError>> {
        Self::of_tensors(evaluation, |_| true)
    }

    /// The laws of the random tensors `wanted` says (by [`TensorId`]) only.
    pub fn of_tensors(
        evaluation: &Evaluation<'_, f64>,
        wanted: impl Fn(TensorId) -> bool,
    ) -> Result<Laws, Box<EvalError>> {
        let instance = evaluation.instance;
        let program = instance.program;
        let mut tensors: Vec<Vec<Law>> = vec![vec![]; program.tensors.len()];
        for random in program.randoms.iter().filter(|r| wanted(r.tensor)) {
            let grid = instance.tensor_grid(random.tensor);
            let tensor = &program.tensors[random.tensor.0];
            let mut frame = Frame::new(&random.var_names, random.slots);
            let mut laws = vec![];
            let mut points = grid.points_from(0);
            let mut k = 0usize;
            while let Some(point) = points.next_point() {
                if k.is_multiple_of(super::CLOCK_STRIDE) {
                    instance.check_clock()?;
                }
                k += 1;
                frame.set_point(point);
                let mut params = [f64::NAN; 2];
                for (slot, arg) in params.iter_mut().zip(&random.distribution.args) {
                    *slot = evaluation.node(arg, &mut frame)?;
                }
                let law = Law {
                    kind: random.distribution.kind,
                    params,
                };
                if let Err(detail) = distribution::check_parameters(law.kind, law.params()) {
                    let element = if point.is_empty() {
                        tensor.name.clone()
                    } else {
                        let index: Vec<String> = point.iter().map(i64::to_string).collect();
                        format!("{}[{}]", tensor.name, index.join(", "))
                    };
                    return Err(Box::new(EvalError::DistributionDomain {
                        element,
                        distribution: law.describe(),
                        detail,
                        at: evaluation.at(&frame),
                        span: random.distribution.span.into(),
                    }));
                }
                laws.push(law);
            }
            if let Some(slot) = tensors.get_mut(random.tensor.0) {
                *slot = laws;
            }
        }
        Ok(Laws { tensors })
    }

    pub fn get(&self, element: RandomElement) -> Option<&Law> {
        self.tensors.get(element.tensor.0)?.get(element.offset)
    }

    /// The laws of one tensor, row-major (empty for a tensor that is not random).
    pub fn of_tensor(&self, t: TensorId) -> &[Law] {
        self.tensors.get(t.0).map_or(&[], Vec::as_slice)
    }
}
