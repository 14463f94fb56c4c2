using Microsoft.Extensions.Logging;

namespace Queue.Worker;

internal static partial class Log
{
    [LoggerMessage(1000, LogLevel.Information, "Worker {WorkerId} started with {Slots} slots")]
    public static partial void WorkerStarted(ILogger logger, string workerId, int slots);

    [LoggerMessage(1001, LogLevel.Debug, "Task {JobId}/{TaskId} attempt {AttemptId} started (delivery {DeliveryCount})")]
    public static partial void TaskStarted(ILogger logger, string jobId, string taskId, string attemptId, int deliveryCount);

    [LoggerMessage(1002, LogLevel.Debug, "Task {JobId}/{TaskId} attempt {AttemptId} succeeded in {ElapsedMs:0} ms")]
    public static partial void TaskSucceeded(ILogger logger, string jobId, string taskId, string attemptId, double elapsedMs);

    [LoggerMessage(1003, LogLevel.Warning, "Task {JobId}/{TaskId} attempt {AttemptId} (delivery {DeliveryCount}) failed: {Error}")]
    public static partial void TaskFailed(ILogger logger, string jobId, string taskId, string attemptId, int deliveryCount, string error);

    [LoggerMessage(1023, LogLevel.Warning, "Task {JobId}/{TaskId} attempt {AttemptId} found map {Map}'s output (attempt {MapAttempt}) missing or damaged; the leader runs that map again and sends this task once more: {Error}")]
    public static partial void MapOutputLost(ILogger logger, string jobId, string taskId, string attemptId, int map, string mapAttempt, string error);

    [LoggerMessage(1004, LogLevel.Warning, "Task {JobId}/{TaskId} attempt {AttemptId} lost its lease; the broker will redeliver it")]
    public static partial void LeaseLost(ILogger logger, string jobId, string taskId, string attemptId);

    [LoggerMessage(1005, LogLevel.Information, "Task {JobId}/{TaskId} attempt {AttemptId} stopped: the job was cancelled")]
    public static partial void TaskCancelled(ILogger logger, string jobId, string taskId, string attemptId);

    [LoggerMessage(1006, LogLevel.Information, "Task {JobId}/{TaskId} attempt {AttemptId} abandoned at shutdown for redelivery")]
    public static partial void TaskAbandonedOnShutdown(ILogger logger, string jobId, string taskId, string attemptId);

    [LoggerMessage(1007, LogLevel.Error, "Message {MessageId} is not a task: {Error}; dead-lettered")]
    public static partial void MalformedTask(ILogger logger, string messageId, string error);

    [LoggerMessage(1008, LogLevel.Warning, "Task {JobId}/{TaskId} arrived for delivery {DeliveryCount}, past its attempts; dead-lettered")]
    public static partial void TaskExhausted(ILogger logger, string jobId, string taskId, int deliveryCount);

    [LoggerMessage(1009, LogLevel.Warning, "Settling message {MessageId} failed, its lease had ended: {Error}")]
    public static partial void SettleLeaseLost(ILogger logger, string messageId, string error);

    [LoggerMessage(1010, LogLevel.Warning, "Receiving a task failed, retrying in {DelaySeconds:0.#} s: {Error}")]
    public static partial void ReceiveFailed(ILogger logger, double delaySeconds, string error);

    [LoggerMessage(1011, LogLevel.Warning, "A task could not be reported or settled, it will be redelivered; retrying in {DelaySeconds:0.#} s: {Error}")]
    public static partial void ProcessFailed(ILogger logger, double delaySeconds, string error);

    [LoggerMessage(1012, LogLevel.Critical, "Worker {WorkerId} stops: a slot failed with an error that is not a broker outage (a bug); the supervisor restarts the process")]
    public static partial void SlotCrashed(ILogger logger, string workerId, Exception exception);

    [LoggerMessage(1016, LogLevel.Critical, "Worker {WorkerId} stops: the broker refused it ({Error}); fix the configuration")]
    public static partial void BrokerRefused(ILogger logger, string workerId, string error);

    [LoggerMessage(1013, LogLevel.Warning, "Task {JobId}/{TaskId}: renewing the lease or checking for cancellation failed, trying again: {Error}")]
    public static partial void GuardFailed(ILogger logger, string jobId, string taskId, string error);

    [LoggerMessage(1014, LogLevel.Warning, "Worker heartbeat failed, trying again: {Error}")]
    public static partial void HeartbeatFailed(ILogger logger, string error);

    [LoggerMessage(1015, LogLevel.Information, "Task {JobId}/{TaskId} attempt {AttemptId} stopped: another attempt of the task committed first")]
    public static partial void TaskSuperseded(ILogger logger, string jobId, string taskId, string attemptId);

    [LoggerMessage(1020, LogLevel.Warning, "Worker {WorkerId} cannot reach the coordination store: it takes no task until it can, and gives back what the broker pushed to it")]
    public static partial void StoreUnreachable(ILogger logger, string workerId);

    [LoggerMessage(1021, LogLevel.Information, "Worker {WorkerId} reaches the coordination store again and takes tasks")]
    public static partial void StoreReachable(ILogger logger, string workerId);

    [LoggerMessage(1022, LogLevel.Information, "Removed {Folders} scratch folders of worker processes that are gone, under {Root}")]
    public static partial void ScratchSwept(ILogger logger, int folders, string root);
}
