//! Line splitting, and what happens when the writer falls behind.

mod lines {
    use super::super::*;

    #[tokio::test]
    async fn lines_are_split_capped_and_the_tail_is_kept() {
        let long = vec![b'x'; MAX_LINE + 10];
        let mut input = b"one\r\ntwo\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nlast without newline");
        let mut r = tokio::io::BufReader::new(&input[..]);
        let mut lines = Vec::new();
        loop {
            let mut l = Vec::new();
            if read_line(&mut r, &mut l).await.unwrap() == 0 {
                break;
            }
            lines.push(l);
        }
        assert_eq!(lines[0], b"one\r");
        assert_eq!(lines[1], b"two");
        assert_eq!(lines[2].len(), MAX_LINE);
        assert_eq!(lines[3], b"xxxxxxxxxx");
        assert_eq!(lines[4], b"last without newline");
    }
}

mod dropping {
    use super::super::*;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    #[derive(Debug, PartialEq)]
    enum Ev {
        Line(String),
        Dropped(u64),
    }

    /// A sink that blocks in its first line until the test releases it: a disk that
    /// stopped answering.
    struct Gate {
        entered: std::sync::mpsc::Sender<()>,
        release: Option<std::sync::mpsc::Receiver<()>>,
        events: Arc<Mutex<Vec<Ev>>>,
    }

    impl Sink for Gate {
        fn line(&mut self, line: &LineRef<'_>) {
            let text = String::from_utf8_lossy(line.text).into_owned();
            self.events.lock().unwrap().push(Ev::Line(text));
            if let Some(release) = self.release.take() {
                let _ = self.entered.send(());
                let _ = release.recv();
            }
        }
        fn dropped(&mut self, n: u64) {
            self.events.lock().unwrap().push(Ev::Dropped(n));
        }
        fn flush(&mut self) {}
    }

    /// An output whose sink hangs on its first line until released: (output, its thread,
    /// what the sink saw, "the sink took a line", "release it").
    #[allow(clippy::type_complexity)]
    fn gated() -> (
        Output,
        std::thread::JoinHandle<()>,
        Arc<Mutex<Vec<Ev>>>,
        std::sync::mpsc::Receiver<()>,
        std::sync::mpsc::Sender<()>,
    ) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel();
        let (output, thread) = Output::start_to(Box::new(Gate {
            entered: entered_tx,
            release: Some(release_rx),
            events: events.clone(),
        }))
        .unwrap();
        (output, thread, events, entered, release)
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_reports_the_count_instead_of_blocking() {
        let (output, thread, events, entered, release) = gated();

        // The writer takes the first line and hangs in the sink.
        output.pump(&b"first\n"[..], 0, 1, Stream::Stdout).await;
        entered.recv_timeout(Duration::from_secs(5)).unwrap();

        // A worker prints far more than the queue holds: its reader must not wait.
        let extra = 700u64;
        let total = QUEUE as u64 + extra;
        // A small pipe, so write_all returns only once the reader has taken nearly all.
        let (mut worker, pipe) = tokio::io::duplex(64);
        let reader = {
            let output = output.clone();
            tokio::spawn(async move {
                output
                    .pump(tokio::io::BufReader::new(pipe), 0, 1, Stream::Stdout)
                    .await
            })
        };
        let mut text = String::new();
        for i in 0..total {
            text.push_str(&format!("line {i}\n"));
        }
        tokio::time::timeout(Duration::from_secs(5), worker.write_all(text.as_bytes()))
            .await
            .expect("the reader waited for the blocked sink")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;

        // The disk answers again; the next line after the gap carries the count.
        release.send(()).unwrap();
        output.flush().await;
        worker.write_all(b"after\n").await.unwrap();
        drop(worker);
        reader.await.unwrap();
        output.close().await;
        thread.join().unwrap();

        let events = events.lock().unwrap();
        let lines: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Ev::Line(l) => Some(l.as_str()),
                Ev::Dropped(_) => None,
            })
            .collect();
        let dropped: u64 = events
            .iter()
            .map(|e| match e {
                Ev::Dropped(n) => *n,
                Ev::Line(_) => 0,
            })
            .sum();
        assert!(
            dropped >= extra,
            "dropped {dropped}, expected at least {extra}"
        );
        assert_eq!(
            lines.len() as u64 + dropped,
            total + 2,
            "every line is either written or counted"
        );
        let n = events.len();
        assert_eq!(events[n - 1], Ev::Line("after".into()));
        assert!(
            matches!(events[n - 2], Ev::Dropped(_)),
            "the count comes right before the next line: {:?}",
            &events[n - 3..]
        );
        // What was kept is the oldest part, in order.
        let kept: Vec<String> = (0..(lines.len() - 2))
            .map(|i| format!("line {i}"))
            .collect();
        assert_eq!(&lines[1..lines.len() - 1], &kept[..]);
    }

    #[tokio::test]
    async fn a_count_left_at_the_end_of_a_pipe_is_reported_before_the_flush() {
        let (output, thread, events, entered, release) = gated();
        output.pump(&b"first\n"[..], 3, 1, Stream::Stderr).await;
        entered.recv_timeout(Duration::from_secs(5)).unwrap();
        let text = "x\n".repeat(QUEUE + 5);
        output.pump(text.as_bytes(), 3, 1, Stream::Stderr).await;
        release.send(()).unwrap();
        output.flush().await;
        assert_eq!(events.lock().unwrap().last(), Some(&Ev::Dropped(5)));
        output.close().await;
        thread.join().unwrap();
    }
}
