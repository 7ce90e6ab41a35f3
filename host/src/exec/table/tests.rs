use super::*;

#[test]
fn steps_of_one_loop_iteration_share_a_row_and_the_final_transfer_has_its_own() {
    let transfer = [Some(1), Some(2), Some(3), None];
    let transient = [Some(1), Some(2), Some(3)];
    let (rows, by) = align(&transfer, &transient);
    assert_eq!(by, Alignment::LoopIteration);
    assert_eq!(
        rows,
        vec![
            (Some(0), Some(0)),
            (Some(1), Some(1)),
            (Some(2), Some(2)),
            (Some(3), None)
        ]
    );
}

#[test]
fn a_missing_step_leaves_a_gap_instead_of_shifting_the_rest() {
    // Iteration 3's transfer CSV and iteration 2's transient CSV were missing.
    let (rows, _) = align(&[Some(1), Some(2), Some(4)], &[Some(1), Some(3), Some(4)]);
    assert_eq!(
        rows,
        vec![
            (Some(0), Some(0)),
            (Some(1), None),
            (None, Some(1)),
            (Some(2), Some(2))
        ]
    );
    // Two transfer steps per iteration pair with the transient steps in order.
    let (rows, _) = align(&[Some(1), Some(1), Some(2), Some(2)], &[Some(1), Some(2)]);
    assert_eq!(
        rows,
        vec![
            (Some(0), Some(0)),
            (Some(1), None),
            (Some(2), Some(1)),
            (Some(3), None)
        ]
    );
}

#[test]
fn without_usable_iterations_steps_pair_by_index() {
    let (rows, by) = align(&[None, None, None], &[None, None]);
    assert_eq!(by, Alignment::StepIndex);
    assert_eq!(
        rows,
        vec![(Some(0), Some(0)), (Some(1), Some(1)), (Some(2), None)]
    );
    // Two loops one after the other restart the count: iterations do not identify steps.
    let (_, by) = align(&[Some(1), Some(2), Some(1)], &[Some(1), Some(2), Some(1)]);
    assert_eq!(by, Alignment::StepIndex);
}

fn record(start_s: i64, iteration: Option<u64>) -> StepKey {
    StepKey {
        start_time: chrono::DateTime::from_timestamp(1_755_265_331 + start_s, 0)
            .map(|t| t.naive_utc()),
        loop_iteration: iteration,
    }
}

#[test]
fn key_columns_come_from_the_step_keys() {
    let transfer = [record(10, Some(1)), record(30, Some(2)), record(50, None)];
    let transient = [record(20, Some(1)), record(40, Some(2))];
    let created = chrono::DateTime::from_timestamp(1_755_265_331, 0).map(|t| t.naive_utc());
    let both = row_layout(
        &[Source::Transfer, Source::Transient],
        &transfer,
        &transient,
        created,
    );
    assert_eq!(both.keys.step_index, vec![0, 1, 2]);
    assert_eq!(both.keys.loop_iteration, vec![Some(1), Some(2), None]);
    assert_eq!(
        both.keys.elapsed_s,
        vec![Some(10.0), Some(30.0), Some(50.0)]
    );
    assert_eq!(
        both.keys.source_steps,
        Some((
            vec![Some(0), Some(1), Some(2)],
            vec![Some(0), Some(1), None]
        ))
    );
    // One data kind: its own steps; without created_at the test starts at the first step.
    let one = row_layout(&[Source::Transient], &transfer, &transient, None);
    assert_eq!(one.keys.step_index, vec![0, 1]);
    assert_eq!(one.keys.elapsed_s, vec![Some(10.0), Some(30.0)]);
    assert_eq!(one.keys.source_steps, None);
    assert_eq!(one.alignment, None);
}

#[test]
fn shapes_map_to_column_kinds() {
    assert_eq!(column_kind(&[]), ColumnKind::Scalar);
    assert_eq!(column_kind(&[Dim::Fixed(2)]), ColumnKind::Expanded(2));
    assert_eq!(column_kind(&[Dim::Dyn("n".into())]), ColumnKind::Nested(1));
    assert_eq!(
        column_kind(&[Dim::Dyn("n".into()), Dim::Fixed(2)]),
        ColumnKind::Nested(2)
    );
}

#[test]
fn a_derived_step_of_a_failed_input_says_which_and_keeps_no_result_apart() {
    let failed = input_failure("gm", &"boom at step 3".to_string().into());
    assert_eq!(failed.kind, FailureKind::InputFailed);
    assert_eq!(&*failed.message, "input 'gm' failed at this step");
    let no_fit = Failure {
        kind: FailureKind::NoResult,
        message: "the current grows".into(),
    };
    let derived = input_failure("decay", &no_fit);
    assert_eq!(derived.kind, FailureKind::NoResult);
    assert_eq!(
        &*derived.message,
        "no fit: input 'decay' has no result at this step"
    );
}
