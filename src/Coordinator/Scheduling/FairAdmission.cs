using Microsoft.Extensions.Options;
using Queue.Contracts.Jobs;

namespace Queue.Coordinator.Scheduling;

/// <summary>
/// Decides which planned tasks enter the task queue (Hadoop's Fair Scheduler, for a pull-based pool).
/// The queue is kept filled just ahead of the live slots: room = slots + ahead − running − queued.
/// Each next task goes to the running job with the least (running + queued) / weight (weighted max-min
/// fairness by water-filling), within the job's <c>maxRunningTasks</c> and
/// <see cref="CoordinatorOptions.MaxQueuedPerJob"/>. Tasks of a few milliseconds mostly end between two
/// rounds, so every round starts from empty slots and the level alone would hand the ties to the same
/// job each time: ties go to the job with the least service so far (tasks admitted / weight, start-time
/// fair queuing's virtual time; a job joins at the current minimum, with no credit), which keeps the
/// shares right over time whatever the task size. Ahead is <see cref="CoordinatorOptions.QueueAhead"/>,
/// or by default half the slots (at least 2); for a job alone with tasks short next to the time a report
/// takes to reach the leader, twice what the slots finish meanwhile, up to two per slot (moving averages
/// of both times). Enough that slots do not wait for the leader, no more than a newly submitted job must
/// wait behind. A job whose phase ends in a batch has its share of the room held until the planner has
/// planned its next phase, which is admitted in the plan's own write: its reduces do not start behind the
/// other jobs' tasks. The leader calls it within every batch of events (a start or an end
/// frees room; the tasks go into the batch's own write) and after every scan, so the queue never runs
/// dry while work is pending. What it keeps besides the stored task states and the workers' heartbeats
/// (the service so far, the average) only breaks ties and sizes the queue: a new leader starts afresh
/// and admits nothing twice. Backups, retries and recoveries do not pass through here: they keep their
/// place.
/// </summary>
public sealed class FairAdmission(TaskDispatcher dispatcher, JobStore jobs, IOptions<CoordinatorOptions> options, TimeProvider time)
{
    private const int MinAhead = 2;
    private readonly CoordinatorOptions options = options.Value;
    private readonly List<Share> shares = [];
    private readonly Dictionary<string, double> service = new(StringComparer.Ordinal);
    private int slots;
    private double taskSeconds = 1;
    private double lagSeconds;
    private DateTimeOffset nextSlotsRead = DateTimeOffset.MinValue;

    /// <summary>
    /// Tells how long a task ran and how long its report took to reach the leader (moving averages), for
    /// the queue's depth: the queue must hold what the slots finish while the leader catches up.
    /// </summary>
    public void ObserveEnd(TimeSpan ran, TimeSpan reportLag)
    {
        taskSeconds += (Math.Clamp(ran.TotalSeconds, 0.0005, 3600) - taskSeconds) / 16;
        // Clocks of other machines may disagree: a lag outside 0..1 s says nothing about this loop.
        lagSeconds += (Math.Clamp(reportLag.TotalSeconds, 0, 1) - lagSeconds) / 16;
    }

    /// <summary>Sends the planned tasks the pool has room for, fairly across the session's running jobs, one write per job.</summary>
    public async Task FillAsync(LeaderSession session, CancellationToken cancellationToken)
    {
        foreach (var admit in await DecideAsync(session, static run => run, cancellationToken))
        {
            await dispatcher.SendAsync(session, admit.Run, admit.Phase, resendUnfinished: false, admit.Count, cancellationToken);
        }
    }

    /// <summary>
    /// How many planned tasks of which job to let in now, judged on each job as <paramref name="view"/>
    /// shows it (the event handler passes its staged copies, so the tasks a batch made room for go into
    /// the batch's own write). The answers name the session's active runs.
    /// </summary>
    public async Task<List<Admission>> DecideAsync(LeaderSession session, Func<JobRun, JobRun> view, CancellationToken cancellationToken, JobRun? planned = null)
    {
        shares.Clear();
        int running = 0, queued = 0;
        var pending = false;
        foreach (var active in session.Active.Values)
        {
            var run = view(active);
            if (ReferenceEquals(active, planned) && run.CurrentPhase is { } planning)
            {
                // The planner's copy with a phase just planned: admitted in the planner's own write.
                shares.Add(Count(active, run, planning));
                pending |= shares[^1].Pending > 0;
                continue;
            }
            // A phase a staged batch just completed moves on only after its write (the planner may have
            // work to do first, as a range-partitioned job's cut points before its maps): not admitted
            // here, but its share of the room is held for it, or the other jobs' tasks would fill the
            // queue and the next phase would start behind them.
            if (run.CurrentPhase is not { } phase || phase != active.CurrentPhase || (phase == TaskPhase.Map && run.PhaseDone(TaskPhase.Map)))
            {
                if (NextPhase(active, run) is { Tasks: > 0 } next)
                {
                    shares.Add(new Share(active, next.Phase) { Pending = next.Tasks, Reserved = true });
                }
                continue;
            }
            var share = Count(active, run, phase);
            running += share.Running;
            queued += share.Queued;
            pending |= share.Pending > 0;
            shares.Add(share);
        }
        var admissions = new List<Admission>();
        if (!pending)
        {
            return admissions;
        }
        var room = int.MaxValue;
        if (options.FairSharing)
        {
            await ReadSlotsAsync(cancellationToken);
            // Competing: another job has tasks in the pool too (running, queued, held back, or about to plan).
            var ahead = options.QueueAhead ?? DefaultAhead(shares.Count > 1);
            room = slots + ahead - running - queued;
        }
        if (room <= 0)
        {
            return admissions;
        }
        JoinService();
        foreach (var share in shares)
        {
            share.LevelBefore = share.Level;
            share.ServedBefore = service[share.Run.Spec.Id];
        }
        Allot(room);
        // The tasks are sent in the order of this list, each job's together, and the queue is first in,
        // first out: the job furthest below its share goes first (a newcomer catching up), ties to the
        // least served. In a fixed order (the active jobs') the first job's tasks always waited least,
        // ended first and so were replaced first: two equal jobs got 16-26 % apart that way.
        shares.Sort(static (a, b) =>
            a.LevelBefore != b.LevelBefore ? a.LevelBefore.CompareTo(b.LevelBefore)
            : a.ServedBefore != b.ServedBefore ? a.ServedBefore.CompareTo(b.ServedBefore)
            : a.Run.Spec.SubmittedAt.CompareTo(b.Run.Spec.SubmittedAt));
        foreach (var share in shares)
        {
            if (share.Admit > 0 && !share.Reserved)
            {
                admissions.Add(new Admission(share.Run, share.Phase, share.Admit));
            }
        }
        return admissions;
    }

    /// <summary>
    /// Admits the tasks of a phase just planned on <paramref name="next"/> (a copy of the active
    /// <paramref name="run"/>): they are marked Queued on <paramref name="next"/>, for the plan's own write.
    /// What the same decision gives the other jobs is left to the <see cref="FillAsync"/> that follows
    /// every scan and batch (and not counted as their service): the plan's write does not wait for theirs.
    /// </summary>
    public async Task StagePlannedAsync(LeaderSession session, JobRun run, JobRun next, CancellationToken cancellationToken)
    {
        foreach (var admit in await DecideAsync(session, r => ReferenceEquals(r, run) ? next : r, cancellationToken, planned: run))
        {
            if (ReferenceEquals(admit.Run, run))
            {
                // The plan writes every task of the phase, so which ones changed is not needed.
                await dispatcher.StageAsync(session, next, admit.Phase, resendUnfinished: false, admit.Count, [], cancellationToken);
            }
            else
            {
                service[admit.Run.Spec.Id] -= admit.Count / admit.Run.Spec.Weight;
            }
        }
    }

    /// <summary>The tasks of the phase a job moves to once its staged phase is written: none when it ends there.</summary>
    private static (TaskPhase Phase, int Tasks) NextPhase(JobRun active, JobRun run) => active.CurrentPhase switch
    {
        TaskPhase.Sample when run.CurrentPhase == TaskPhase.Map => (TaskPhase.Map, run.Maps.Length),
        TaskPhase.Map when run.Status.State == JobState.Mapping && run.PhaseDone(TaskPhase.Map) && !run.Spec.MapOnly => (TaskPhase.Reduce, run.Spec.ReduceTasks),
        _ => (TaskPhase.Map, 0),
    };

    /// <summary>
    /// Half the slots (at least 2) for tasks long next to the leader's round trip, or while jobs compete;
    /// for short ones of a job alone, twice what the slots finish while a report is on its way and the
    /// leader refills, up to two per slot.
    /// </summary>
    private int DefaultAhead(bool competing)
    {
        var least = Math.Max(MinAhead, (slots + 1) / 2);
        if (competing)
        {
            // Every task admitted waits behind what is queued: while jobs compete, a deep queue is what keeps
            // the one below its share (a newcomer, or one starting its reduces) waiting, not the slots.
            return least;
        }
        // Capped at two per slot: deeper, a job submitted behind another waits longer for its first slots.
        var most = Math.Max(MinAhead, 2 * slots);
        var needed = 2 * slots * lagSeconds / taskSeconds;
        return needed <= least ? least : (int)Math.Min(most, Math.Ceiling(needed));
    }

    /// <summary>A job seen for the first time starts at the least service of the others (no credit for having waited); ended jobs are forgotten.</summary>
    private void JoinService()
    {
        var least = double.MaxValue;
        foreach (var share in shares)
        {
            if (service.TryGetValue(share.Run.Spec.Id, out var served) && served < least)
            {
                least = served;
            }
        }
        foreach (var share in shares)
        {
            service.TryAdd(share.Run.Spec.Id, least == double.MaxValue ? 0 : least);
        }
        if (service.Count > 2 * shares.Count + 16)
        {
            var current = new HashSet<string>(StringComparer.Ordinal);
            foreach (var share in shares)
            {
                current.Add(share.Run.Spec.Id);
            }
            foreach (var id in service.Keys.ToList())
            {
                if (!current.Contains(id))
                {
                    service.Remove(id);
                }
            }
        }
    }

    /// <summary>Water-filling: one task at a time to the job furthest below its weighted share; ties to the least served.</summary>
    private void Allot(int room)
    {
        var maxQueued = options.MaxQueuedPerJob ?? int.MaxValue;
        while (room > 0)
        {
            Share? next = null;
            var nextLevel = double.MaxValue;
            var nextServed = double.MaxValue;
            foreach (var share in shares)
            {
                if (share.Pending == 0 || share.Queued >= maxQueued || share.Running + share.Queued >= (share.Run.Spec.MaxRunningTasks ?? int.MaxValue))
                {
                    continue;
                }
                var level = share.Level;
                var served = service[share.Run.Spec.Id];
                if (level < nextLevel || (level == nextLevel && (served < nextServed
                    || (served == nextServed && share.Run.Spec.SubmittedAt < next!.Run.Spec.SubmittedAt))))
                {
                    next = share;
                    nextLevel = level;
                    nextServed = served;
                }
            }
            if (next is null)
            {
                return;
            }
            if (!next.Reserved)
            {
                service[next.Run.Spec.Id] = nextServed + (1 / next.Run.Spec.Weight);
            }
            next.Admit++;
            next.Queued++;
            next.Pending--;
            room--;
        }
    }

    private async Task ReadSlotsAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        if (now < nextSlotsRead)
        {
            return;
        }
        var total = 0;
        foreach (var worker in await jobs.ListWorkersAsync(cancellationToken))
        {
            total += worker.Slots;
        }
        slots = total;
        nextSlotsRead = now + options.SlotsRefresh;
    }

    private static Share Count(JobRun active, JobRun run, TaskPhase phase)
    {
        var progress = run.Counts(phase);
        return new Share(active, phase) { Pending = progress.Pending, Queued = progress.Queued, Running = progress.Running };
    }

    /// <summary>Let <see cref="Count"/> planned tasks of <see cref="Run"/>'s <see cref="Phase"/> in.</summary>
    public sealed record Admission(JobRun Run, TaskPhase Phase, int Count);

    /// <summary>One job's slots in use, its queued and held-back tasks, and what this round admits.</summary>
    private sealed class Share(JobRun run, TaskPhase phase)
    {
        public JobRun Run { get; } = run;
        public TaskPhase Phase { get; } = phase;
        public int Running { get; set; }
        public int Queued { get; set; }
        public int Pending { get; set; }
        public int Admit { get; set; }
        /// <summary>Slots in use and queued per unit of weight: water-filling raises the lowest.</summary>
        public double Level => (Running + Queued) / Run.Spec.Weight;
        /// <summary>The job's level and service before this round: its tasks are sent in that order.</summary>
        public double LevelBefore { get; set; }
        public double ServedBefore { get; set; }
        /// <summary>Room held for a job moving to its next phase: nothing is admitted for it this round.</summary>
        public bool Reserved { get; init; }
    }
}
