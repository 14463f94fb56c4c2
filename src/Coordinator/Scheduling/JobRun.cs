using Queue.Contracts.Jobs;

namespace Queue.Coordinator.Scheduling;

/// <summary>The leader's in-memory copy of one active job; changed only after its fenced write succeeded.</summary>
public sealed class JobRun(JobSpec spec, JobStatus status)
{
    // Per phase, an index before which no task is Planned: tasks leave Planned in index order and return
    // to it only through Reopen, so admission need not scan a phase from its start each time (quadratic in its tasks).
    private readonly int[] plannedFrom = new int[3];
    private TaskRecord[] maps = [];
    private TaskRecord[] reduces = [];
    private TaskRecord[] samples = [];

    public JobSpec Spec { get; } = spec;

    public JobStatus Status { get; set; } = status;

    /// <summary>The map tasks; setting a newly planned phase starts its admission cursor over.</summary>
    public TaskRecord[] Maps
    {
        get => maps;
        set => (maps, plannedFrom[(int)TaskPhase.Map]) = (value, 0);
    }

    public TaskRecord[] Reduces
    {
        get => reduces;
        set => (reduces, plannedFrom[(int)TaskPhase.Reduce]) = (value, 0);
    }

    /// <summary>A range-partitioned job's sampling task (one), run before its maps.</summary>
    public TaskRecord[] Samples
    {
        get => samples;
        set => (samples, plannedFrom[(int)TaskPhase.Sample]) = (value, 0);
    }

    /// <summary>A copy to apply changes to before they are written (the arrays are shared until replaced).</summary>
    public JobRun Copy()
    {
        var copy = new JobRun(Spec, Status) { maps = maps, reduces = reduces, samples = samples };
        plannedFrom.CopyTo(copy.plannedFrom, 0);
        return copy;
    }

    /// <summary>Takes a written copy's state as this job's own.</summary>
    public void Adopt(JobRun written)
    {
        Status = written.Status;
        (maps, reduces, samples) = (written.maps, written.reduces, written.samples);
        written.plannedFrom.CopyTo(plannedFrom, 0);
    }

    /// <summary>No task of <paramref name="phase"/> before this index is Planned.</summary>
    public int PlannedFrom(TaskPhase phase) => plannedFrom[(int)phase];

    /// <summary>
    /// A task of <paramref name="phase"/> put back to Planned (a map whose output was lost, the reduce that
    /// found it): admission looks from it again.
    /// </summary>
    public void Reopen(TaskPhase phase, int index) => plannedFrom[(int)phase] = Math.Min(plannedFrom[(int)phase], index);

    /// <summary>Moves the phase's admission cursor on (the tasks before <paramref name="index"/> were admitted).</summary>
    public void AdmittedTo(TaskPhase phase, int index) => plannedFrom[(int)phase] = Math.Max(plannedFrom[(int)phase], index);

    public TaskRecord[] Tasks(TaskPhase phase) => phase switch
    {
        TaskPhase.Map => Maps,
        TaskPhase.Reduce => Reduces,
        _ => Samples,
    };

    /// <summary>The phase's tasks with some changed (the same tasks: its admission cursor stays).</summary>
    public void SetTasks(TaskPhase phase, TaskRecord[] records)
    {
        switch (phase)
        {
            case TaskPhase.Map:
                maps = records;
                break;
            case TaskPhase.Reduce:
                reduces = records;
                break;
            default:
                samples = records;
                break;
        }
    }

    /// <summary>The phase whose tasks run now: the sample before a range-partitioned job's maps, then the maps, then the reduces.</summary>
    public TaskPhase? CurrentPhase => Status.State switch
    {
        JobState.Mapping when Samples.Length > 0 && !AllDone(Samples) => TaskPhase.Sample,
        JobState.Mapping => TaskPhase.Map,
        JobState.Reducing => TaskPhase.Reduce,
        _ => null,
    };

    /// <summary>
    /// The job's progress with one task of <paramref name="phase"/> moved from one state to another: a
    /// step, not a recount of the phase (the leader applies thousands of reports to a job of thousands of
    /// tasks). The sample task has no progress of its own.
    /// </summary>
    public static JobStatus WithMove(JobStatus status, TaskPhase phase, TaskState from, TaskState to) =>
        from == to ? status : phase switch
        {
            TaskPhase.Map => status with { Map = Add(Add(status.Map, from, -1), to, 1) },
            TaskPhase.Reduce => status with { Reduce = Add(Add(status.Reduce, from, -1), to, 1) },
            _ => status,
        };

    private static PhaseProgress Add(PhaseProgress progress, TaskState state, int count) => state switch
    {
        TaskState.Planned => progress with { Pending = progress.Pending + count },
        TaskState.Queued => progress with { Queued = progress.Queued + count },
        TaskState.Running => progress with { Running = progress.Running + count },
        TaskState.Done => progress with { Done = progress.Done + count },
        _ => progress with { Failed = progress.Failed + count },
    };

    /// <summary>A phase's tasks by state, as the job's status keeps them (the sample's counted from its one task).</summary>
    public PhaseProgress Counts(TaskPhase phase) => phase switch
    {
        TaskPhase.Map => Status.Map,
        TaskPhase.Reduce => Status.Reduce,
        _ => Progress(Samples),
    };

    /// <summary>Every task of the phase done, by the status's counts (no scan of the tasks).</summary>
    public bool PhaseDone(TaskPhase phase) =>
        Tasks(phase) is { Length: > 0 } tasks && Counts(phase) is { } counts && counts.Done == tasks.Length && counts.Total == tasks.Length;

    /// <summary>The job's progress with <paramref name="phase"/>'s tasks counted again (the sample task has no progress of its own).</summary>
    public static JobStatus WithProgress(JobStatus status, TaskPhase phase, TaskRecord[] records) => phase switch
    {
        TaskPhase.Map => status with { Map = Progress(records) },
        TaskPhase.Reduce => status with { Reduce = Progress(records) },
        _ => status,
    };

    public static PhaseProgress Progress(TaskRecord[] tasks)
    {
        int pending = 0, queued = 0, running = 0, done = 0, failed = 0;
        foreach (var task in tasks)
        {
            switch (task.State)
            {
                case TaskState.Planned:
                    pending++;
                    break;
                case TaskState.Queued:
                    queued++;
                    break;
                case TaskState.Running:
                    running++;
                    break;
                case TaskState.Done:
                    done++;
                    break;
                case TaskState.Failed:
                    failed++;
                    break;
            }
        }
        return new PhaseProgress { Total = tasks.Length, Pending = pending, Queued = queued, Running = running, Done = done, Failed = failed };
    }

    public static bool AllDone(TaskRecord[] tasks)
    {
        foreach (var task in tasks)
        {
            if (task.State != TaskState.Done)
            {
                return false;
            }
        }
        return true;
    }
}
