using System.ComponentModel.DataAnnotations;

namespace Queue.Adapters.Azure;

/// <summary>
/// Azure Storage account settings (<c>Queue:Azure</c>): a connection string, or the account name,
/// key and endpoints. Works with Azurite's <c>devstoreaccount1</c> and with real accounts. Never logged.
/// </summary>
public sealed class AzureStorageOptions : IValidatableObject
{
    public const string Section = "Queue:Azure";

    /// <summary><c>AccountName=...;AccountKey=...;BlobEndpoint=...;QueueEndpoint=...</c> (or DefaultEndpointsProtocol + EndpointSuffix).</summary>
    public string? ConnectionString { get; set; }

    public string? AccountName { get; set; }

    /// <summary>Base64 Shared Key.</summary>
    public string? AccountKey { get; set; }

    /// <summary>A SAS token (without '?') used instead of the key.</summary>
    public string? SasToken { get; set; }

    public string? BlobEndpoint { get; set; }

    public string? QueueEndpoint { get; set; }

    /// <summary>Prefix of queue names (lowercase letters, digits, '-'). Default <c>queue-</c>: queues <c>queue-tasks</c>, <c>queue-events</c> and their <c>-poison</c> queues.</summary>
    [RegularExpression("^[a-z0-9-]*$")]
    public string QueuePrefix { get; set; } = "queue-";

    /// <summary>Size of one uploaded block. Default 4 MiB.</summary>
    [Range(64 * 1024, 100 * 1024 * 1024)]
    public int BlockSizeBytes { get; set; } = 4 * 1024 * 1024;

    /// <summary>Time limit of one request. Default 100 s (block uploads can be large).</summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:10:00")]
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(100);

    /// <summary>Longest pause between polls of an empty queue. Default 1 s.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:01:00")]
    public TimeSpan MaxPollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Resolves the connection string into account, key and endpoints.</summary>
    public AzureAccount Resolve()
    {
        var parts = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var item in (ConnectionString ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var eq = item.IndexOf('=');
            if (eq > 0)
            {
                parts[item[..eq]] = item[(eq + 1)..];
            }
        }
        var account = AccountName ?? parts.GetValueOrDefault("AccountName") ?? throw new InvalidOperationException("Queue:Azure needs AccountName (or a connection string with it).");
        var protocol = parts.GetValueOrDefault("DefaultEndpointsProtocol") ?? "https";
        var suffix = parts.GetValueOrDefault("EndpointSuffix") ?? "core.windows.net";
        var blob = BlobEndpoint ?? parts.GetValueOrDefault("BlobEndpoint") ?? $"{protocol}://{account}.blob.{suffix}";
        var queue = QueueEndpoint ?? parts.GetValueOrDefault("QueueEndpoint") ?? $"{protocol}://{account}.queue.{suffix}";
        var key = AccountKey ?? parts.GetValueOrDefault("AccountKey");
        var sas = SasToken ?? parts.GetValueOrDefault("SharedAccessSignature");
        if (key is null && sas is null)
        {
            throw new InvalidOperationException("Queue:Azure needs an AccountKey or a SasToken.");
        }
        return new AzureAccount(account, key is null ? null : Convert.FromBase64String(key), sas?.TrimStart('?'),
            new Uri(blob.TrimEnd('/') + "/"), new Uri(queue.TrimEnd('/') + "/"));
    }

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        var errors = new List<ValidationResult>();
        try
        {
            Resolve();
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or UriFormatException)
        {
            // The message names the missing setting, never a secret's value.
            errors.Add(new ValidationResult(e is FormatException ? "Queue:Azure AccountKey is not valid base64." : e.Message));
        }
        return errors;
    }
}

/// <summary>A resolved account: name, key (or SAS) and service endpoints.</summary>
public sealed record AzureAccount(string Name, byte[]? Key, string? Sas, Uri BlobEndpoint, Uri QueueEndpoint);
