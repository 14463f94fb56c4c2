using Queue.Contracts.Jobs;

namespace Queue.Coordinator.Scheduling;

/// <summary>The leader's in-memory copy of one active job; changed only after its fenced write succeeded.</summary>
public sealed class JobRun(JobSpec spec, JobStatus status)
{
    public JobSpec Spec { get; } = spec;

    public JobStatus Status { get; set; } = status;

    public TaskRecord[] Maps { get; set; } = [];

    public TaskRecord[] Reduces { get; set; } = [];

    /// <summary>A range-partitioned job's sampling task (one), run before its maps.</summary>
    public TaskRecord[] Samples { get; set; } = [];

    /// <summary>A copy to apply changes to before they are written (the arrays are shared until replaced).</summary>
    public JobRun Copy() => new(Spec, Status) { Maps = Maps, Reduces = Reduces, Samples = Samples };

    /// <summary>Takes a written copy's state as this job's own.</summary>
    public void Adopt(JobRun written)
    {
        Status = written.Status;
        Maps = written.Maps;
        Reduces = written.Reduces;
        Samples = written.Samples;
    }

    public TaskRecord[] Tasks(TaskPhase phase) => phase switch
    {
        TaskPhase.Map => Maps,
        TaskPhase.Reduce => Reduces,
        _ => Samples,
    };

    public void SetTasks(TaskPhase phase, TaskRecord[] records)
    {
        switch (phase)
        {
            case TaskPhase.Map:
                Maps = records;
                break;
            case TaskPhase.Reduce:
                Reduces = records;
                break;
            default:
                Samples = records;
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
