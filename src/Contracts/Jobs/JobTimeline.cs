namespace Queue.Contracts.Jobs;

/// <summary>
/// <c>GET /jobs/{id}/timeline</c>: a job's attempts laid out for its page — one bar per attempt, each on a
/// lane of its worker (a worker has as many lanes as attempts it ran at once, at most its slots), with
/// the phase boundaries, the output parts and their sizes, and the dead-letter reasons.
/// </summary>
public sealed record JobTimeline(
    JobSpec Spec, JobStatus Status, List<TimelineLane> Lanes, List<TimelineBar> Bars, List<OutputPart> Outputs, List<string> DeadLetters, DateTimeOffset At);

/// <summary>One row of the timeline: a slot of a worker, as far as the attempts show it.</summary>
public sealed record TimelineLane(string Worker, int Slot);

/// <summary>One attempt: when it was queued, ran and ended, where, and how it ended.</summary>
public sealed record TimelineBar(
    string Task, TaskPhase Phase, string Attempt, int Lane, DateTimeOffset? QueuedAt, DateTimeOffset StartedAt, DateTimeOffset? EndedAt,
    AttemptOutcome Outcome, bool Backup, bool Won, long? InputBytes, long? InputRecords, long? OutputRecords, string? Error);

public sealed record OutputPart(string Name, long Length);

/// <summary>Lays a job's attempts out on lanes, from its task records.</summary>
public static class TimelineBuilder
{
    public static JobTimeline Build(JobView view, List<TaskRecord> tasks, List<OutputPart> outputs, DateTimeOffset now)
    {
        var attempts = new List<(TaskRecord Task, AttemptRecord Attempt)>();
        var deadLetters = new List<string>();
        foreach (var task in tasks)
        {
            if (task.DeadLetterReason is { } reason)
            {
                deadLetters.Add($"{TaskNames.TaskId(task.Phase, task.Index)}: {reason}");
            }
            if (task.History is { Count: > 0 } history)
            {
                foreach (var attempt in history)
                {
                    attempts.Add((task, attempt));
                }
            }
            else if (task is { StartedAt: { } started, LastAttempt: { } last })
            {
                // A record from before attempts were kept: its last attempt only.
                attempts.Add((task, new AttemptRecord
                {
                    Id = last, Worker = task.Worker, QueuedAt = task.QueuedAt, StartedAt = started, EndedAt = task.FinishedAt,
                    Outcome = task.State == TaskState.Done ? AttemptOutcome.Succeeded : AttemptOutcome.Running,
                }));
            }
        }
        // Greedy interval packing per worker, in start order: each attempt takes the first lane of its
        // worker that is free by its start. Unended attempts run until now (or the job's end).
        attempts.Sort(static (a, b) => a.Attempt.StartedAt.CompareTo(b.Attempt.StartedAt));
        var end = view.Status.FinishedAt ?? now;
        var lanes = new List<TimelineLane>();
        var freeAt = new List<DateTimeOffset>();
        var bars = new List<TimelineBar>(attempts.Count);
        foreach (var (task, attempt) in attempts)
        {
            var worker = attempt.Worker ?? "?";
            var lane = -1;
            for (var i = 0; i < lanes.Count; i++)
            {
                if (lanes[i].Worker == worker && freeAt[i] <= attempt.StartedAt)
                {
                    lane = i;
                    break;
                }
            }
            if (lane < 0)
            {
                var slot = 0;
                foreach (var existing in lanes)
                {
                    slot += existing.Worker == worker ? 1 : 0;
                }
                lanes.Add(new TimelineLane(worker, slot));
                freeAt.Add(DateTimeOffset.MinValue);
                lane = lanes.Count - 1;
            }
            var ended = attempt.EndedAt ?? end;
            freeAt[lane] = ended > attempt.StartedAt ? ended : attempt.StartedAt;
            // An attempt still running when its job ended was stopped with it.
            var outcome = attempt.Outcome == AttemptOutcome.Running && view.Status.IsTerminal ? AttemptOutcome.Killed : attempt.Outcome;
            bars.Add(new TimelineBar(TaskNames.TaskId(task.Phase, task.Index), task.Phase, attempt.Id, lane, attempt.QueuedAt, attempt.StartedAt,
                attempt.EndedAt ?? (view.Status.IsTerminal ? end : null), outcome, attempt.Backup, task.WinningAttempt == attempt.Id,
                attempt.InputBytes, attempt.InputRecords, attempt.OutputRecords, attempt.Error));
        }
        // Lanes in worker order, each worker's slots together; bars follow their lanes.
        var order = new int[lanes.Count];
        for (var i = 0; i < order.Length; i++)
        {
            order[i] = i;
        }
        Array.Sort(order, (a, b) => string.CompareOrdinal(lanes[a].Worker, lanes[b].Worker) is var c and not 0 ? c : lanes[a].Slot.CompareTo(lanes[b].Slot));
        var position = new int[lanes.Count];
        var sortedLanes = new List<TimelineLane>(lanes.Count);
        for (var i = 0; i < order.Length; i++)
        {
            position[order[i]] = i;
            sortedLanes.Add(lanes[order[i]]);
        }
        for (var i = 0; i < bars.Count; i++)
        {
            bars[i] = bars[i] with { Lane = position[bars[i].Lane] };
        }
        return new JobTimeline(view.Spec, view.Status, sortedLanes, bars, outputs, deadLetters, now);
    }
}
