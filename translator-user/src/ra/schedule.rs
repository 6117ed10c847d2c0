//! When to send the next multicast Router Advertisement (RFC 4861 sections 6.2.4 and 6.2.6):
//! a pure state machine; the caller passes the time and the random draws, so the rules are
//! unit-tested without a clock.
//!
//! - Unsolicited advertisements: each interval drawn uniformly between MinRtrAdvInterval and
//!   MaxRtrAdvInterval; the first [`MAX_INITIAL_RTR_ADVERTISEMENTS`] advertisements after the
//!   interface starts advertising (or its configuration changes) at most
//!   [`MAX_INITIAL_RTR_ADVERT_INTERVAL`] apart.
//! - Answers to solicitations are multicast (RFC 4861's usual case; one answer serves every
//!   host that asked in the meantime): sent after a random delay of up to
//!   [`MAX_RA_DELAY_TIME`], but never sooner than [`MIN_DELAY_BETWEEN_RAS`] after the previous
//!   multicast advertisement (then that much after it, plus the delay); an answer that would
//!   come later than the advertisement already scheduled is folded into it.
//! - Every multicast advertisement, solicited or not, restarts the interval timer.

use std::time::{Duration, Instant};

/// RFC 4861 section 10, router constants.
pub const MAX_INITIAL_RTR_ADVERT_INTERVAL: Duration = Duration::from_secs(16);
pub const MAX_INITIAL_RTR_ADVERTISEMENTS: u32 = 3;
pub const MIN_DELAY_BETWEEN_RAS: Duration = Duration::from_secs(3);
pub const MAX_RA_DELAY_TIME: Duration = Duration::from_millis(500);

/// What the advertisement that is due answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// The interval timer ran out.
    Unsolicited,
    /// A solicitation asked for it.
    Solicited,
}

/// The timers of one advertising interface.
#[derive(Debug, Clone)]
pub struct Schedule {
    min: Duration,
    max: Duration,
    /// Advertisements sent since the interface (re)started advertising, up to the initial count.
    sent_initial: u32,
    last_multicast: Option<Instant>,
    next_unsolicited: Instant,
    /// A multicast answer scheduled before `next_unsolicited`.
    answer_at: Option<Instant>,
    /// Valid solicitations the next multicast advertisement answers.
    waiting: u64,
}

impl Schedule {
    /// Starts advertising: the first advertisement is due at `now`.
    pub fn new(now: Instant, min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            sent_initial: 0,
            last_multicast: None,
            next_unsolicited: now,
            answer_at: None,
            waiting: 0,
        }
    }

    /// When the next multicast advertisement is due.
    pub fn next(&self) -> Instant {
        match self.answer_at {
            Some(a) if a < self.next_unsolicited => a,
            _ => self.next_unsolicited,
        }
    }

    /// The kind of advertisement due at `now`, if one is.
    pub fn due(&self, now: Instant) -> Option<Due> {
        if now < self.next() {
            return None;
        }
        Some(if self.waiting > 0 {
            Due::Solicited
        } else {
            Due::Unsolicited
        })
    }

    /// A valid solicitation arrived at `now`; `delay` is the random draw in
    /// 0..=[`MAX_RA_DELAY_TIME`] (see [`Schedule::draw_delay`]). Returns when it will be
    /// answered.
    pub fn solicited(&mut self, now: Instant, delay: Duration) -> Instant {
        self.waiting += 1;
        let mut at = now + delay;
        if let Some(last) = self.last_multicast
            && now < last + MIN_DELAY_BETWEEN_RAS
        {
            at = last + MIN_DELAY_BETWEEN_RAS + delay;
        }
        if at < self.next() {
            self.answer_at = Some(at);
        }
        self.next()
    }

    /// A multicast advertisement went out at `now`; `interval` is the random draw between
    /// min and max (see [`Schedule::draw_interval`]). Returns how many solicitations it
    /// answered.
    pub fn sent(&mut self, now: Instant, interval: Duration) -> u64 {
        self.last_multicast = Some(now);
        self.answer_at = None;
        let interval = if self.sent_initial < MAX_INITIAL_RTR_ADVERTISEMENTS {
            self.sent_initial += 1;
            if self.sent_initial < MAX_INITIAL_RTR_ADVERTISEMENTS {
                interval.min(MAX_INITIAL_RTR_ADVERT_INTERVAL)
            } else {
                interval
            }
        } else {
            interval
        };
        self.next_unsolicited = now + interval;
        std::mem::take(&mut self.waiting)
    }

    /// Sending failed at `now` (no link-local address yet, a send error): try again in a
    /// second, without counting it as an advertisement.
    pub fn retry(&mut self, now: Instant) {
        self.answer_at = None;
        self.next_unsolicited = now + Duration::from_secs(1);
    }

    /// The configuration changed at `now` (RFC 4861 section 6.2.4: as if the interface had
    /// just started advertising): new intervals, the initial advertisements again, the next
    /// one as soon as the minimum delay between advertisements allows.
    pub fn restart(&mut self, now: Instant, min: Duration, max: Duration) {
        self.min = min;
        self.max = max;
        self.sent_initial = 0;
        let earliest = self
            .last_multicast
            .map_or(now, |l| (l + MIN_DELAY_BETWEEN_RAS).max(now));
        self.next_unsolicited = earliest;
        self.answer_at = None;
    }

    /// An interval between min and max from a random `u64`.
    pub fn draw_interval(&self, random: u64) -> Duration {
        between(self.min, self.max, random)
    }

    /// A solicitation's delay between 0 and [`MAX_RA_DELAY_TIME`] from a random `u64`.
    pub fn draw_delay(random: u64) -> Duration {
        between(Duration::ZERO, MAX_RA_DELAY_TIME, random)
    }
}

/// Uniform in `lo..=hi` at millisecond resolution.
fn between(lo: Duration, hi: Duration, random: u64) -> Duration {
    let lo_ms = lo.as_millis() as u64;
    let span = (hi.as_millis() as u64).saturating_sub(lo_ms);
    Duration::from_millis(lo_ms + random % (span + 1))
}

/// A random `u64` from the kernel (getrandom(2)); falls back to the clock when that fails.
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most `b.len()` bytes into the buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 8 {
        u64::from_ne_bytes(b)
    } else {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        t ^ (t >> 29) ^ u64::from(std::process::id()) << 32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn setup() -> (Instant, Schedule) {
        let t0 = Instant::now();
        (t0, Schedule::new(t0, 198 * S, 600 * S))
    }

    #[test]
    fn first_advertisements_are_at_most_16_s_apart() {
        let (t0, mut s) = setup();
        assert_eq!(s.due(t0), Some(Due::Unsolicited));
        let mut t = t0;
        let mut gaps = Vec::new();
        for _ in 0..5 {
            t = s.next();
            s.sent(t, 500 * S);
            gaps.push(s.next() - t);
        }
        assert_eq!(gaps, [16 * S, 16 * S, 500 * S, 500 * S, 500 * S]);
        // A configuration change starts the initial phase again, 3 s after the last one.
        s.restart(t + S, 3 * S, 4 * S);
        assert_eq!(s.next(), t + 3 * S);
        s.sent(s.next(), 4 * S);
        assert_eq!(s.draw_interval(0), 3 * S);
        assert_eq!(s.draw_interval(1000), 4 * S);
        assert_eq!(s.draw_interval(1001), 3 * S);
    }

    #[test]
    fn answers_wait_for_the_random_delay_and_the_3_s_spacing() {
        let (t0, mut s) = setup();
        s.sent(t0, 500 * S);
        // 1 s after a multicast advertisement: 3 s after it, plus the delay.
        let at = s.solicited(t0 + S, Duration::from_millis(200));
        assert_eq!(at, t0 + Duration::from_millis(3200));
        // A second solicitation that would be answered later joins the first answer.
        let at2 = s.solicited(t0 + 2 * S, Duration::from_millis(400));
        assert_eq!(at2, at);
        assert_eq!(s.due(at - Duration::from_millis(1)), None);
        assert_eq!(s.due(at), Some(Due::Solicited));
        assert_eq!(s.sent(at, 300 * S), 2);
        assert_eq!(s.next(), at + 16 * S, "still in the initial phase");
        // Long after: only the random delay.
        let later = at + 10 * S;
        assert_eq!(
            s.solicited(later, Duration::from_millis(499)),
            later + Duration::from_millis(499)
        );
    }

    #[test]
    fn an_answer_later_than_the_next_advertisement_is_folded_into_it() {
        let (t0, mut s) = setup();
        s.sent(t0, 500 * S);
        let next = s.next();
        assert_eq!(next, t0 + 16 * S);
        let at = s.solicited(
            next - Duration::from_millis(100),
            Duration::from_millis(400),
        );
        assert_eq!(at, next);
        assert_eq!(s.due(next), Some(Due::Solicited));
        assert_eq!(s.sent(next, 500 * S), 1);
        assert_eq!(s.due(next + S), None);
    }

    #[test]
    fn a_failed_send_is_retried_within_a_second() {
        let (t0, mut s) = setup();
        s.retry(t0);
        assert_eq!(s.next(), t0 + S);
        s.sent(t0 + S, 500 * S);
        assert_eq!(s.next(), t0 + 17 * S, "the failed attempt did not count");
    }

    #[test]
    fn delays_stay_in_range() {
        for r in [0, 1, 499, 500, 501, u64::MAX] {
            assert!(Schedule::draw_delay(r) <= MAX_RA_DELAY_TIME);
        }
        assert_ne!(random_u64(), random_u64());
    }
}
