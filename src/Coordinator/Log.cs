using Microsoft.Extensions.Logging;

namespace Queue.Coordinator;

internal static partial class Log
{
    [LoggerMessage(2000, LogLevel.Information, "Coordinator {CandidateId} is campaigning for leadership")]
    public static partial void Campaigning(ILogger logger, string candidateId);

    [LoggerMessage(2001, LogLevel.Information, "Coordinator {CandidateId} leads (epoch {Epoch})")]
    public static partial void BecameLeader(ILogger logger, string candidateId, long epoch);

    [LoggerMessage(2002, LogLevel.Warning, "Coordinator {CandidateId} lost leadership (epoch {Epoch})")]
    public static partial void LostLeadership(ILogger logger, string candidateId, long epoch);

    [LoggerMessage(2003, LogLevel.Information, "Coordinator {CandidateId} resigned")]
    public static partial void Resigned(ILogger logger, string candidateId);

    [LoggerMessage(2004, LogLevel.Warning, "Coordinator {CandidateId} could not campaign, will retry: {Error}")]
    public static partial void CampaignFailed(ILogger logger, string candidateId, string error);

    [LoggerMessage(2010, LogLevel.Information, "Job {JobId} planned: {MapTasks} map tasks, {ReduceTasks} reduce tasks over {InputBytes} bytes")]
    public static partial void JobPlanned(ILogger logger, string jobId, int mapTasks, int reduceTasks, long inputBytes);

    [LoggerMessage(2011, LogLevel.Information, "Job {JobId} map phase done; {ReduceTasks} reduce tasks queued")]
    public static partial void ReducePhaseStarted(ILogger logger, string jobId, int reduceTasks);

    [LoggerMessage(2012, LogLevel.Information, "Job {JobId} ended {State}")]
    public static partial void JobEnded(ILogger logger, string jobId, string state);

    [LoggerMessage(2013, LogLevel.Warning, "Job {JobId} failed: {Error}")]
    public static partial void JobFailed(ILogger logger, string jobId, string error);

    [LoggerMessage(2014, LogLevel.Debug, "Ignored {Kind} event for {JobId}/{TaskId} attempt {AttemptId}: {Why}")]
    public static partial void EventIgnored(ILogger logger, string kind, string jobId, string taskId, string attemptId, string why);

    [LoggerMessage(2015, LogLevel.Warning, "Dropped an unreadable message from {Queue}: {Error}")]
    public static partial void UnreadableMessage(ILogger logger, string queue, string error);

    [LoggerMessage(2016, LogLevel.Information, "Leader session ended: {Reason}")]
    public static partial void SessionEnded(ILogger logger, string reason);

    [LoggerMessage(2017, LogLevel.Warning, "Could not delete intermediates of job {JobId}: {Error}")]
    public static partial void CleanupFailed(ILogger logger, string jobId, string error);

    [LoggerMessage(2018, LogLevel.Information, "Reconciled {Jobs} active jobs after gaining leadership")]
    public static partial void Reconciled(ILogger logger, int jobs);

    [LoggerMessage(2031, LogLevel.Information, "Job {JobId}: task {TaskId} is a straggler; a backup attempt was sent")]
    public static partial void BackupLaunched(ILogger logger, string jobId, string taskId);

    [LoggerMessage(2030, LogLevel.Warning, "The watch on active jobs failed; relying on the periodic rescan until it is back: {Error}")]
    public static partial void WatchFailed(ILogger logger, string error);

    [LoggerMessage(2032, LogLevel.Debug, "Message {MessageId}: its lease ended before it was settled: {Error}")]
    public static partial void SettleLeaseLost(ILogger logger, string messageId, string error);

    [LoggerMessage(2033, LogLevel.Warning, "Could not hand this coordinator's unsettled events back to the broker; they return when its connection closes: {Error}")]
    public static partial void StopReceivingFailed(ILogger logger, string error);

    [LoggerMessage(2034, LogLevel.Warning, "Job {JobId}: task {TaskId} was sent again; its report was lost ({Why})")]
    public static partial void TaskRecovered(ILogger logger, string jobId, string taskId, string why);

    [LoggerMessage(2036, LogLevel.Information, "Job {JobId}: its {Tasks} task records were dropped (task history retention)")]
    public static partial void TaskHistoryDropped(ILogger logger, string jobId, int tasks);

    [LoggerMessage(2037, LogLevel.Information, "Job {JobId}: forgotten (finished job retention)")]
    public static partial void JobForgotten(ILogger logger, string jobId);

    [LoggerMessage(2038, LogLevel.Warning, "Job retention pass failed; the next one tries again: {Error}")]
    public static partial void RetentionFailed(ILogger logger, string error);

    [LoggerMessage(2035, LogLevel.Information, "Job {JobId}: {Cuts} cut points chosen from {Keys} sampled keys")]
    public static partial void CutPointsChosen(ILogger logger, string jobId, int cuts, int keys);

    [LoggerMessage(2039, LogLevel.Information, "Job {JobId}: intermediates left behind are deleted ({Why})")]
    public static partial void IntermediatesSwept(ILogger logger, string jobId, string why);

    [LoggerMessage(2040, LogLevel.Warning, "Intermediate sweep failed; the next one tries again: {Error}")]
    public static partial void SweepFailed(ILogger logger, string error);

    [LoggerMessage(2041, LogLevel.Warning, "Job {JobId}: reduce {Reduce} found map {Map}'s output (attempt {Attempt}) missing or damaged; the map runs again (rerun {Rerun})")]
    public static partial void MapRerun(ILogger logger, string jobId, int reduce, int map, string attempt, int rerun);

    [LoggerMessage(2042, LogLevel.Debug, "Compacted the coordination store's history before revision {Revision}")]
    public static partial void HistoryCompacted(ILogger logger, long revision);

    [LoggerMessage(2043, LogLevel.Warning, "Compacting the coordination store's history failed; the next pass tries again: {Error}")]
    public static partial void CompactionFailed(ILogger logger, string error);
}
