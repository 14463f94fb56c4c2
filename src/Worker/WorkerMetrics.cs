using System.Diagnostics.Metrics;
using Queue.Contracts.Jobs;

namespace Queue.Worker;

/// <summary>The worker's instruments (meter <c>Queue.Worker</c>); exported at <c>/metrics</c>.</summary>
public sealed class WorkerMetrics
{
    public const string MeterName = "Queue.Worker";

    private readonly Meter meter;
    private readonly Counter<long> started;
    private readonly Counter<long> completed;
    private readonly Counter<long> failed;
    private readonly Counter<long> redelivered;
    private readonly Counter<long> deadLettered;
    private readonly Histogram<double> duration;
    private readonly Counter<long> renewals;
    private readonly Counter<long> leasesLost;
    private readonly Counter<long> mapOutputsLost;
    private readonly Counter<long> bytesRead;
    private readonly Counter<long> bytesWritten;
    private readonly Counter<long> recordsIn;
    private readonly Counter<long> recordsOut;

    public WorkerMetrics(IMeterFactory factory)
    {
        meter = factory.Create(MeterName);
        started = meter.CreateCounter<long>("queue.tasks.started", "{task}", "Task attempts started, by phase.");
        completed = meter.CreateCounter<long>("queue.tasks.completed", "{task}", "Task attempts that succeeded, by phase.");
        failed = meter.CreateCounter<long>("queue.tasks.failed", "{task}", "Task attempts that failed or timed out, by phase.");
        redelivered = meter.CreateCounter<long>("queue.tasks.redelivered", "{task}", "Tasks received again after an earlier delivery, by phase.");
        deadLettered = meter.CreateCounter<long>("queue.tasks.dead_lettered", "{task}", "Tasks this worker dead-lettered, by phase.");
        duration = meter.CreateHistogram<double>("queue.task.duration", "s", "Task attempt run time, by phase and outcome.");
        renewals = meter.CreateCounter<long>("queue.lease.renewals", "{renewal}", "Lease renewals.");
        leasesLost = meter.CreateCounter<long>("queue.leases.lost", "{lease}", "Leases lost while a task ran.");
        mapOutputsLost = meter.CreateCounter<long>("queue.map_outputs.lost", "{output}",
            "Map outputs a reduce found missing or damaged (reported for the map to run again): a disk or a store losing data shows here.");
        bytesRead = meter.CreateCounter<long>("queue.bytes.read", "By", "Bytes read by tasks, by phase.");
        bytesWritten = meter.CreateCounter<long>("queue.bytes.written", "By", "Bytes written by tasks, by phase.");
        recordsIn = meter.CreateCounter<long>("queue.records.in", "{record}", "Records read by tasks, by phase.");
        recordsOut = meter.CreateCounter<long>("queue.records.out", "{record}", "Records written by tasks, by phase.");
    }

    /// <summary>Reports the slot gauges from the processor that owns them.</summary>
    public void ObserveSlots(Func<int> busy, int total)
    {
        meter.CreateObservableGauge("queue.worker.slots.busy", busy, "{slot}", "Slots running a task.");
        meter.CreateObservableGauge("queue.worker.slots", () => total, "{slot}", "Task slots of this worker.");
    }

    public void Started(TaskPhase phase, int deliveryCount)
    {
        started.Add(1, Phase(phase));
        if (deliveryCount > 1)
        {
            redelivered.Add(1, Phase(phase));
        }
    }

    public void Succeeded(TaskPhase phase, TimeSpan elapsed, TaskCounters counters)
    {
        var tag = Phase(phase);
        completed.Add(1, tag);
        duration.Record(elapsed.TotalSeconds, tag, new KeyValuePair<string, object?>("outcome", "succeeded"));
        bytesRead.Add(counters.InputBytes, tag);
        bytesWritten.Add(counters.OutputBytes, tag);
        recordsIn.Add(counters.InputRecords, tag);
        recordsOut.Add(counters.OutputRecords, tag);
    }

    public void Failed(TaskPhase phase, TimeSpan elapsed)
    {
        failed.Add(1, Phase(phase));
        duration.Record(elapsed.TotalSeconds, Phase(phase), new KeyValuePair<string, object?>("outcome", "failed"));
    }

    public void DeadLettered(TaskPhase phase) => deadLettered.Add(1, Phase(phase));

    public void LeaseRenewed() => renewals.Add(1);

    public void LeaseLost() => leasesLost.Add(1);

    public void MapOutputLost() => mapOutputsLost.Add(1);

    private static KeyValuePair<string, object?> Phase(TaskPhase phase) => new("phase", phase switch { TaskPhase.Map => "map", TaskPhase.Reduce => "reduce", _ => "sample" });
}
