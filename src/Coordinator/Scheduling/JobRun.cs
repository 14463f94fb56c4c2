using Queue.Contracts.Jobs;

namespace Queue.Coordinator.Scheduling;

/// <summary>The leader's in-memory copy of one active job; changed only after its fenced write succeeded.</summary>
public sealed class JobRun(JobSpec spec, JobStatus status)
{
    public JobSpec Spec { get; } = spec;

    public JobStatus Status { get; set; } = status;

    public TaskRecord[] Maps { get; set; } = [];

    public TaskRecord[] Reduces { get; set; } = [];

    public TaskRecord[] Tasks(TaskPhase phase) => phase == TaskPhase.Map ? Maps : Reduces;

    public void SetTasks(TaskPhase phase, TaskRecord[] records)
    {
        if (phase == TaskPhase.Map)
        {
            Maps = records;
        }
        else
        {
            Reduces = records;
        }
    }

    public static JobStatus WithProgress(JobStatus status, TaskPhase phase, TaskRecord[] records) =>
        phase == TaskPhase.Map ? status with { Map = Progress(records) } : status with { Reduce = Progress(records) };

    public static PhaseProgress Progress(TaskRecord[] tasks)
    {
        int queued = 0, running = 0, done = 0, failed = 0;
        foreach (var task in tasks)
        {
            switch (task.State)
            {
                case TaskState.Planned:
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
        return new PhaseProgress { Total = tasks.Length, Queued = queued, Running = running, Done = done, Failed = failed };
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
