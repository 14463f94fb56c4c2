using System.ComponentModel.DataAnnotations;

namespace Queue.Adapters.Azure;

/// <summary>
/// Azure Storage settings (<c>Queue:Azure</c>). Credentials, in order: a connection string; else the
/// account's endpoints (or its name) with a SAS token, an account key, or — the default, and the way
/// AKS workload identity and managed identities work — a token from Azure.Identity's
/// DefaultAzureCredential. Works with Azurite and real accounts. Never logged.
/// </summary>
public sealed class AzureStorageOptions : IValidatableObject
{
    public const string Section = "Queue:Azure";

    /// <summary><c>AccountName=...;AccountKey=...;BlobEndpoint=...;QueueEndpoint=...</c>, or with DefaultEndpointsProtocol and EndpointSuffix.</summary>
    public string? ConnectionString { get; set; }

    /// <summary>The account; its endpoints default to <c>https://{account}.blob.core.windows.net</c> and <c>.queue.</c>.</summary>
    public string? AccountName { get; set; }

    public string? BlobEndpoint { get; set; }

    public string? QueueEndpoint { get; set; }

    /// <summary>A SAS token (without '?') instead of an identity.</summary>
    public string? SasToken { get; set; }

    /// <summary>The account key instead of an identity (prefer an identity, or a connection string in a Secret).</summary>
    public string? AccountKey { get; set; }

    /// <summary>Client id of a user-assigned managed identity, when the pod has several; workload identity sets <c>AZURE_CLIENT_ID</c> itself.</summary>
    public string? ManagedIdentityClientId { get; set; }

    /// <summary>Prefix of queue names (lowercase letters, digits, '-'). Default <c>queue-</c>: queues <c>queue-tasks</c>, <c>queue-events</c> and their <c>-poison</c> queues.</summary>
    [RegularExpression("^[a-z0-9-]*$")]
    public string QueuePrefix { get; set; } = "queue-";

    /// <summary>Size of one staged block. Default 4 MiB.</summary>
    [Range(64 * 1024, 100 * 1024 * 1024)]
    public int BlockSizeBytes { get; set; } = 4 * 1024 * 1024;

    /// <summary>Time limit of one try of a request (the SDK's network timeout). Default 100 s (blocks can be large).</summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:10:00")]
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(100);

    /// <summary>Retries of a failed request (5xx, 408, timeouts, dropped connections), by the SDK with exponential back-off. Default 3.</summary>
    [Range(0, 20)]
    public int MaxRetries { get; set; } = 3;

    /// <summary>First retry delay; it doubles per retry. Default 0.2 s.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:01:00")]
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>Longest pause between polls of an empty queue. Default 1 s.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:01:00")]
    public TimeSpan MaxPollInterval { get; set; } = TimeSpan.FromSeconds(1);

    public Uri BlobServiceUri() => Endpoint(BlobEndpoint, "blob");

    public Uri QueueServiceUri() => Endpoint(QueueEndpoint, "queue");

    private Uri Endpoint(string? configured, string service) =>
        new((configured ?? (AccountName is null
            ? throw new InvalidOperationException($"Queue:Azure needs a ConnectionString, or {(service == "blob" ? "Blob" : "Queue")}Endpoint / AccountName.")
            : $"https://{AccountName}.{service}.core.windows.net")).TrimEnd('/') + "/");

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (ConnectionString is not null)
        {
            yield break;
        }
        string? problem = null;
        try
        {
            _ = BlobServiceUri();
            _ = QueueServiceUri();
        }
        catch (Exception e) when (e is InvalidOperationException or UriFormatException)
        {
            problem = e.Message;
        }
        if (problem is null && AccountKey is not null && AccountName is null)
        {
            problem = "Queue:Azure AccountKey needs AccountName.";
        }
        // The message names the missing setting, never a secret's value.
        if (problem is not null)
        {
            yield return new ValidationResult(problem);
        }
    }
}
