using System.Text.Json;
using System.Text.Json.Serialization;

namespace Queue.Adapters.Etcd;

// The etcd v3 JSON gateway's messages (grpc-gateway mapping of rpc.proto): bytes are base64,
// int64 travels as a string, and fields at their default value are omitted.

internal sealed class ResponseHeader
{
    public long Revision { get; set; }
}

internal sealed class KeyValue
{
    public byte[] Key { get; set; } = [];
    public long CreateRevision { get; set; }
    public long ModRevision { get; set; }
    public long Version { get; set; }
    public byte[]? Value { get; set; }
    public long Lease { get; set; }
}

internal sealed class RangeRequest
{
    public byte[] Key { get; set; } = [];
    public byte[]? RangeEnd { get; set; }
    public long Limit { get; set; }
    public string? SortOrder { get; set; }
    public string? SortTarget { get; set; }
}

internal sealed class RangeResponse
{
    public ResponseHeader? Header { get; set; }
    public List<KeyValue>? Kvs { get; set; }
    public bool More { get; set; }
}

internal sealed class PutRequest
{
    public byte[] Key { get; set; } = [];
    public byte[]? Value { get; set; }
    public long Lease { get; set; }
}

internal sealed class DeleteRangeRequest
{
    public byte[] Key { get; set; } = [];
    public byte[]? RangeEnd { get; set; }
}

internal sealed class Compare
{
    public byte[] Key { get; set; } = [];
    public string Result { get; set; } = "EQUAL";
    public string Target { get; set; } = "MOD";
    public long? CreateRevision { get; set; }
    public long? ModRevision { get; set; }
}

internal sealed class RequestOp
{
    public PutRequest? RequestPut { get; set; }
    public DeleteRangeRequest? RequestDeleteRange { get; set; }
}

internal sealed class TxnRequest
{
    public List<Compare> Compare { get; set; } = [];
    public List<RequestOp> Success { get; set; } = [];
    public List<RequestOp> Failure { get; set; } = [];
}

internal sealed class TxnResponse
{
    public ResponseHeader? Header { get; set; }
    public bool Succeeded { get; set; }
}

internal sealed class LeaseRequest
{
    [JsonPropertyName("TTL")]
    public long Ttl { get; set; }

    [JsonPropertyName("ID")]
    public long Id { get; set; }
}

internal sealed class LeaseResponse
{
    [JsonPropertyName("TTL")]
    public long Ttl { get; set; }

    [JsonPropertyName("ID")]
    public long Id { get; set; }
}

internal sealed class KeepAliveResponse
{
    public LeaseResponse? Result { get; set; }
}

internal sealed class WatchCreateRequest
{
    public byte[] Key { get; set; } = [];
    public byte[]? RangeEnd { get; set; }
    public long StartRevision { get; set; }
}

internal sealed class WatchRequest
{
    public WatchCreateRequest? CreateRequest { get; set; }
}

internal sealed class WatchEvent
{
    /// <summary>PUT is the default and omitted on the wire.</summary>
    public string? Type { get; set; }
    public KeyValue? Kv { get; set; }
}

internal sealed class WatchResult
{
    public ResponseHeader? Header { get; set; }
    public bool Created { get; set; }
    public bool Canceled { get; set; }
    public long CompactRevision { get; set; }
    public List<WatchEvent>? Events { get; set; }
}

internal sealed class WatchResponse
{
    public WatchResult? Result { get; set; }
}

internal sealed class ErrorResponse
{
    public string? Error { get; set; }
    public string? Message { get; set; }
    public int Code { get; set; }
}

internal sealed class Empty
{
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    NumberHandling = JsonNumberHandling.AllowReadingFromString | JsonNumberHandling.WriteAsString,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingDefault)]
[JsonSerializable(typeof(RangeRequest))]
[JsonSerializable(typeof(RangeResponse))]
[JsonSerializable(typeof(PutRequest))]
[JsonSerializable(typeof(DeleteRangeRequest))]
[JsonSerializable(typeof(TxnRequest))]
[JsonSerializable(typeof(TxnResponse))]
[JsonSerializable(typeof(LeaseRequest))]
[JsonSerializable(typeof(LeaseResponse))]
[JsonSerializable(typeof(KeepAliveResponse))]
[JsonSerializable(typeof(WatchRequest))]
[JsonSerializable(typeof(WatchResponse))]
[JsonSerializable(typeof(ErrorResponse))]
[JsonSerializable(typeof(Empty))]
internal sealed partial class EtcdJsonContext : JsonSerializerContext;
