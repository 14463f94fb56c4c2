using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Queue.Contracts;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Coordinator.Scheduling;

/// <summary>
/// A job's phases: splits the input into map tasks, moves from map to reduce once every map is done
/// (writing the manifest of winning attempts), and resumes a job from its stored state after a failover.
/// </summary>
public sealed class JobPlanner(
    JobStore jobs,
    IBlobStore blobs,
    TaskDispatcher dispatcher,
    FairAdmission admission,
    JobFinisher finisher,
    IOptions<StorageOptions> storage,
    TimeProvider time,
    ILogger<JobPlanner> logger)
{
    private const int MaxMapTasks = 100_000;
    private const int SamplePieces = 10;
    private const long SampleBytesPerPiece = 1 << 20;
    private readonly StorageOptions storage = storage.Value;

    /// <summary>Reads an active job's stored status and task records.</summary>
    public async Task<JobRun> LoadAsync(JobEntry entry, CancellationToken cancellationToken)
    {
        var run = new JobRun(entry.Spec, entry.Status);
        if (entry.Status.State == JobState.Pending)
        {
            return run;
        }
        var maps = new List<TaskRecord>();
        var reduces = new List<TaskRecord>();
        var samples = new List<TaskRecord>();
        foreach (var task in await jobs.GetTasksAsync(entry.Spec.Id, cancellationToken))
        {
            (task.Phase switch { TaskPhase.Map => maps, TaskPhase.Reduce => reduces, _ => samples }).Add(task);
        }
        run.Maps = [.. maps];
        run.Reduces = [.. reduces];
        run.Samples = [.. samples];
        // Counted again from the tasks: the leader steps these counts per report from here on, and a
        // write too large for one transaction may have stored its tasks without its status.
        run.Status = run.Status with
        {
            Map = run.Maps.Length > 0 ? JobRun.Progress(run.Maps) : run.Status.Map,
            Reduce = run.Reduces.Length > 0 ? JobRun.Progress(run.Reduces) : run.Status.Reduce,
        };
        return run;
    }

    /// <summary>Continues a job from its stored state: plan it, send what was planned but never sent, or move to the next phase.</summary>
    public async Task ResumeAsync(LeaderSession session, JobRun run, CancellationToken cancellationToken)
    {
        switch (run.Status.State)
        {
            case JobState.Pending:
                await PlanAsync(session, run, cancellationToken);
                break;
            case JobState.Mapping when run.Maps.Length != run.Status.Map.Total:
                await PlanAsync(session, run, cancellationToken);
                break;
            case JobState.Mapping when JobRun.AllDone(run.Maps):
                await FinishMapPhaseAsync(session, run, cancellationToken);
                break;
            case JobState.Mapping when run.CurrentPhase == TaskPhase.Sample:
                await dispatcher.SendAsync(session, run, TaskPhase.Sample, session.ResendUnfinished, admit: 0, cancellationToken);
                break;
            case JobState.Mapping:
                await StartMapsAsync(session, run, session.ResendUnfinished, cancellationToken);
                break;
            case JobState.Reducing when run.Reduces.Length != run.Spec.ReduceTasks:
                await StartReducePhaseAsync(session, run, cancellationToken);
                break;
            case JobState.Reducing when JobRun.AllDone(run.Reduces):
                await finisher.EndAsync(session, run, JobState.Succeeded, null, cancellationToken);
                break;
            case JobState.Reducing:
                await dispatcher.SendAsync(session, run, TaskPhase.Reduce, session.ResendUnfinished, admit: 0, cancellationToken);
                break;
        }
    }

    /// <summary>After a task succeeded: the next phase (or the end) once its phase is all done.</summary>
    public async Task AdvanceAsync(LeaderSession session, JobRun run, TaskPhase phase, CancellationToken cancellationToken)
    {
        if (phase == TaskPhase.Sample && run.Status.State == JobState.Mapping && JobRun.AllDone(run.Samples))
        {
            await StartMapsAsync(session, run, resendUnfinished: false, cancellationToken);
        }
        else if (phase == TaskPhase.Map && run.Status.State == JobState.Mapping && run.PhaseDone(TaskPhase.Map) && JobRun.AllDone(run.Maps))
        {
            await FinishMapPhaseAsync(session, run, cancellationToken);
        }
        else if (phase == TaskPhase.Reduce && run.Status.State == JobState.Reducing && run.PhaseDone(TaskPhase.Reduce) && JobRun.AllDone(run.Reduces))
        {
            await finisher.EndAsync(session, run, JobState.Succeeded, null, cancellationToken);
        }
    }

    private async Task PlanAsync(LeaderSession session, JobRun run, CancellationToken cancellationToken)
    {
        var spec = run.Spec;
        using var span = QueueTracing.Start(QueueTracing.Coordinator, "job plan", spec.TraceParent);
        span?.SetTag("queue.job", spec.Id);
        if (spec.MapJob is not null)
        {
            // A reduce-only job: the map-only job's manifest and intermediates are its map phase.
            await StartReducePhaseAsync(session, run, cancellationToken);
            return;
        }
        var inputs = new List<BlobItem>();
        await foreach (var blob in blobs.ListAsync(spec.InputContainer, spec.InputPrefix, cancellationToken))
        {
            inputs.Add(blob);
        }
        if (inputs.Count == 0)
        {
            await finisher.EndAsync(session, run, JobState.Failed, $"Input '{spec.InputContainer}/{spec.InputPrefix}' holds no blobs.", cancellationToken);
            return;
        }
        // Workers write here; object stores (unlike folders) need containers made first.
        await blobs.CreateContainerIfMissingAsync(storage.IntermediateContainer, cancellationToken);
        await blobs.CreateContainerIfMissingAsync(storage.OutputContainer, cancellationToken);
        long totalBytes = 0;
        foreach (var input in inputs)
        {
            totalBytes += input.Length;
        }
        if (SplitPlanner.TaskCount(totalBytes, spec.MapTasks, spec.SplitSizeBytes) is var needed and > MaxMapTasks)
        {
            await finisher.EndAsync(session, run, JobState.Failed, $"The input would need {needed} map tasks; the limit is {MaxMapTasks}. Raise splitSizeBytes.", cancellationToken);
            return;
        }
        var splits = SplitPlanner.Plan(inputs, spec.MapTasks, spec.SplitSizeBytes);
        long inputBytes = 0;
        var maps = new TaskRecord[splits.Count];
        for (var i = 0; i < maps.Length; i++)
        {
            maps[i] = new TaskRecord { Phase = TaskPhase.Map, Index = i, State = TaskState.Planned, Split = splits[i][0], Splits = splits[i].Count > 1 ? splits[i] : null };
            foreach (var piece in splits[i])
            {
                inputBytes += piece.Length;
            }
        }
        // A range-partitioned job first samples its map output's keys (TeraSort's sampler): one task
        // reads the start of up to ten splits spread across the input and runs the map over them.
        TaskRecord[] samples = [];
        if (spec.NeedsSample)
        {
            var pieces = new List<InputSplit>();
            var count = Math.Min(SamplePieces, maps.Length);
            for (var i = 0; i < count; i++)
            {
                var first = splits[(int)((long)i * maps.Length / count)][0];
                pieces.Add(first with { Length = Math.Min(first.Length, SampleBytesPerPiece) });
            }
            samples = [new TaskRecord { Phase = TaskPhase.Sample, Index = 0, State = TaskState.Planned, Split = pieces[0], Splits = pieces }];
        }
        var status = run.Status with
        {
            State = JobState.Mapping,
            StartedAt = time.GetUtcNow(),
            Map = JobRun.Progress(maps),
            Reduce = spec.MapOnly ? new PhaseProgress() : new PhaseProgress { Total = spec.ReduceTasks, Pending = spec.ReduceTasks },
        };
        var next = run.Copy();
        next.Maps = maps;
        next.Samples = samples;
        next.Status = status;
        // The first tasks the pool has room for (the sample, or maps) are sent and recorded with the plan.
        await CommitPlanAsync(session, run, next, [TaskPhase.Sample, TaskPhase.Map], cancellationToken);
        Log.JobPlanned(logger, spec.Id, maps.Length, spec.ReduceTasks, inputBytes);
        // The rest go out as FairAdmission lets them in.
        if (samples.Length == 0)
        {
            await StartMapsAsync(session, run, resendUnfinished: false, cancellationToken);
        }
    }

    /// <summary>
    /// Readies the maps (FairAdmission sends them; after a restart of the embedded queue the unfinished
    /// ones are sent again here); a range-partitioned job's cut points are chosen from its sample first
    /// (again after a failover: the same winning sample gives the same cut points).
    /// </summary>
    private async Task StartMapsAsync(LeaderSession session, JobRun run, bool resendUnfinished, CancellationToken cancellationToken)
    {
        var spec = run.Spec;
        if (spec.NeedsSample)
        {
            var winner = run.Samples[0].WinningAttempt ?? throw new InvalidOperationException($"The sample task of {spec.Id} is done without a winner.");
            var keys = PartitionCuts.Read(await blobs.ReadAllBytesAsync(storage.IntermediateContainer, TaskNames.SampleKeys(spec.Id, winner), cancellationToken));
            var cuts = PartitionCuts.Choose([.. keys], spec.ReduceTasks);
            await blobs.PutAsync(storage.IntermediateContainer, TaskNames.PartitionCuts(spec.Id), PartitionCuts.Write(cuts), cancellationToken);
            Log.CutPointsChosen(logger, spec.Id, cuts.Count, keys.Length);
        }
        await dispatcher.SendAsync(session, run, TaskPhase.Map, resendUnfinished, admit: 0, cancellationToken);
    }

    /// <summary>Every map is done: record the winners in the manifest, then reduce — or end here for a map-only job.</summary>
    private async Task FinishMapPhaseAsync(LeaderSession session, JobRun run, CancellationToken cancellationToken)
    {
        var spec = run.Spec;
        using var span = QueueTracing.Start(QueueTracing.Coordinator, "map phase done: manifest", spec.TraceParent);
        span?.SetTag("queue.job", spec.Id);
        var winners = new List<string>(run.Maps.Length);
        var lengths = new List<long>(run.Maps.Length);
        foreach (var map in run.Maps)
        {
            winners.Add(map.WinningAttempt ?? throw new InvalidOperationException($"Map task {map.Index} of {spec.Id} is done without a winner."));
            lengths.Add(map.OutputLength ?? throw new InvalidOperationException($"Map task {map.Index} of {spec.Id} is done without its output's length."));
        }
        // The manifest is derived from fenced state, so rewriting it after a failover gives the same bytes.
        await blobs.CreateContainerIfMissingAsync(storage.IntermediateContainer, cancellationToken);
        await blobs.PutAsync(storage.IntermediateContainer, TaskNames.MapManifest(spec.Id),
            JsonSerializer.SerializeToUtf8Bytes(new MapManifest(spec.Id, winners, lengths), QueueJsonContext.Default.MapManifest), cancellationToken);
        if (spec.MapOnly)
        {
            await finisher.EndAsync(session, run, JobState.Succeeded, null, cancellationToken);
            return;
        }
        await StartReducePhaseAsync(session, run, cancellationToken);
    }

    private async Task StartReducePhaseAsync(LeaderSession session, JobRun run, CancellationToken cancellationToken)
    {
        var spec = run.Spec;
        using var span = QueueTracing.Start(QueueTracing.Coordinator, "reduce phase start", spec.TraceParent);
        span?.SetTag("queue.job", spec.Id);
        await blobs.CreateContainerIfMissingAsync(storage.OutputContainer, cancellationToken);
        // Back from re-running maps whose output a reduce lost: the reduces stay as they are (the done ones
        // done, the one that found the loss planned again); the rest of the plan starts them.
        var reduces = run.Reduces;
        if (reduces.Length != spec.ReduceTasks)
        {
            reduces = new TaskRecord[spec.ReduceTasks];
            for (var r = 0; r < reduces.Length; r++)
            {
                reduces[r] = new TaskRecord { Phase = TaskPhase.Reduce, Index = r, State = TaskState.Planned };
            }
        }
        var status = run.Status with
        {
            State = JobState.Reducing,
            StartedAt = run.Status.StartedAt ?? time.GetUtcNow(),
            MapFinishedAt = run.Status.MapFinishedAt ?? time.GetUtcNow(),
            Map = JobRun.Progress(run.Maps),
            Reduce = JobRun.Progress(reduces),
        };
        var next = run.Copy();
        next.Reduces = reduces;
        next.Status = status;
        // The reduces the pool has room for now (held for this job while its last maps were recorded) go
        // out with the plan, in one write; the rest as FairAdmission lets them in.
        await CommitPlanAsync(session, run, next, [TaskPhase.Reduce], cancellationToken);
        Log.ReducePhaseStarted(logger, spec.Id, reduces.Length);
    }

    /// <summary>
    /// Lets in the first tasks of the phase planned on <paramref name="next"/> that the pool has room for,
    /// then writes every task of <paramref name="planned"/> (as staged) with the status, in one write.
    /// </summary>
    private async Task CommitPlanAsync(LeaderSession session, JobRun run, JobRun next, TaskPhase[] planned, CancellationToken cancellationToken)
    {
        await admission.StagePlannedAsync(session, run, next, cancellationToken);
        var tasks = new List<TaskRecord>();
        foreach (var phase in planned)
        {
            tasks.AddRange(next.Tasks(phase));
        }
        await session.CommitRunAsync(run, next, tasks, cancellationToken);
    }
}
