using System.Text.Json;
using System.Text.Json.Serialization;
using Queue.Contracts.Jobs;
using Queue.Contracts.Ports;

namespace Queue.Contracts;

/// <summary>The one source-generated JSON context for every wire and stored type.</summary>
// Duplicate properties are refused: {"app":"../../etc","app":"wordcount"} must not mean the last one.
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, AllowDuplicateProperties = false)]
[JsonSerializable(typeof(JobSpec))]
[JsonSerializable(typeof(JobStatus))]
[JsonSerializable(typeof(TaskRecord))]
[JsonSerializable(typeof(TaskMessage))]
[JsonSerializable(typeof(TaskEvent))]
[JsonSerializable(typeof(MapManifest))]
[JsonSerializable(typeof(JobView))]
[JsonSerializable(typeof(List<JobView>))]
[JsonSerializable(typeof(JobRequest))]
[JsonSerializable(typeof(SeedRequest))]
[JsonSerializable(typeof(JobCreated))]
[JsonSerializable(typeof(JobDetails))]
[JsonSerializable(typeof(List<BlobItem>))]
[JsonSerializable(typeof(BlobItem))]
[JsonSerializable(typeof(List<QueueDepth>))]
[JsonSerializable(typeof(WorkerHeartbeat))]
[JsonSerializable(typeof(ScaleSignal))]
[JsonSerializable(typeof(JobTimeline))]
[JsonSerializable(typeof(List<WorkerHeartbeat>))]
public sealed partial class QueueJsonContext : JsonSerializerContext;
