using System.Text.Json;
using System.Text.Json.Serialization;

namespace Queue.Coordinator;

/// <summary>What <c>GET /coordinator</c> reports.</summary>
public sealed record CoordinatorStatus(string CandidateId, bool Leader, long Epoch, int LeadershipChanges);

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(CoordinatorStatus))]
public sealed partial class CoordinatorJsonContext : JsonSerializerContext;
