//! The Universal Scalability Law, C(N) = N / (1 + α(N−1) + βN(N−1)), fitted to the
//! sweep's (workers, req/s) points: α is contention (the serial part), β coherency (the
//! cost of workers keeping each other in step); with β > 0 throughput peaks at
//! N* = √((1−α)/β). Least squares on the linear form N/C(N) − 1 = α(N−1) + βN(N−1), with
//! C(N) = X(N)/X(1), both coefficients kept ≥ 0.

/// A fitted law.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usl {
    /// Throughput of one worker, req/s.
    pub lambda: f64,
    /// Contention.
    pub alpha: f64,
    /// Coherency.
    pub beta: f64,
}

/// Points needed for a fit: two coefficients and one worker count that fixes λ.
pub const MIN_POINTS: usize = 3;

impl Usl {
    /// Fits `points` (workers, req/s); `None` with fewer than [`MIN_POINTS`] distinct
    /// counts or without the 1-worker point.
    pub fn fit(points: &[(f64, f64)]) -> Option<Usl> {
        let lambda = points.iter().find(|(n, _)| *n == 1.0)?.1;
        if points.len() < MIN_POINTS || lambda <= 0.0 {
            return None;
        }
        // y = α·a + β·b, a = N−1, b = N(N−1).
        let rows: Vec<(f64, f64, f64)> = points
            .iter()
            .filter(|(n, x)| *n > 1.0 && *x > 0.0)
            .map(|(n, x)| (n - 1.0, n * (n - 1.0), n / (x / lambda) - 1.0))
            .collect();
        let s = |f: &dyn Fn(&(f64, f64, f64)) -> f64| rows.iter().map(f).sum::<f64>();
        let (aa, ab, bb) = (s(&|r| r.0 * r.0), s(&|r| r.0 * r.1), s(&|r| r.1 * r.1));
        let (ay, by) = (s(&|r| r.0 * r.2), s(&|r| r.1 * r.2));
        let det = aa * bb - ab * ab;
        let (mut alpha, mut beta) = if det.abs() > 1e-12 {
            ((ay * bb - by * ab) / det, (aa * by - ab * ay) / det)
        } else {
            (ay / aa.max(1e-12), 0.0)
        };
        // A negative coefficient has no meaning: fit the other alone.
        if beta < 0.0 {
            beta = 0.0;
            alpha = ay / aa.max(1e-12);
        }
        if alpha < 0.0 {
            alpha = 0.0;
            beta = (by / bb.max(1e-12)).max(0.0);
        }
        Some(Usl {
            lambda,
            alpha: alpha.min(1.0),
            beta,
        })
    }

    /// Predicted req/s with `n` workers.
    pub fn predict(&self, n: f64) -> f64 {
        self.lambda * n / (1.0 + self.alpha * (n - 1.0) + self.beta * n * (n - 1.0))
    }

    /// Where throughput peaks, if it does.
    pub fn peak(&self) -> Option<f64> {
        (self.beta > 0.0).then(|| ((1.0 - self.alpha) / self.beta).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_known_coefficients() {
        let truth = Usl {
            lambda: 1000.0,
            alpha: 0.05,
            beta: 0.002,
        };
        let pts: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 8.0, 16.0]
            .iter()
            .map(|&n| (n, truth.predict(n)))
            .collect();
        let fit = Usl::fit(&pts).unwrap();
        assert!(
            (fit.alpha - 0.05).abs() < 1e-6 && (fit.beta - 0.002).abs() < 1e-6,
            "{fit:?}"
        );
        let peak = fit.peak().unwrap();
        assert!((peak - (0.95f64 / 0.002).sqrt()).abs() < 1e-3);
        assert!(Usl::fit(&pts[..2]).is_none());
        // Linear scaling: nothing to pay, no peak.
        let lin: Vec<(f64, f64)> = [1.0, 2.0, 3.0].iter().map(|&n| (n, 100.0 * n)).collect();
        let fit = Usl::fit(&lin).unwrap();
        assert!(fit.alpha.abs() < 1e-9 && fit.peak().is_none(), "{fit:?}");
    }
}
