using System.ComponentModel.DataAnnotations;

namespace Queue.Adapters.ServiceBus;

/// <summary>
/// Azure Service Bus settings (<c>Queue:ServiceBus</c>). Credentials, in order: a connection string;
/// else the namespace with a token from Azure.Identity's DefaultAzureCredential (AKS workload identity,
/// managed identities). The queues are the infrastructure's: this adapter never creates them (deploy/
/// says how they must be configured). Never logged.
/// </summary>
public sealed class ServiceBusOptions : IValidatableObject
{
    public const string Section = "Queue:ServiceBus";

    /// <summary><c>Endpoint=sb://{namespace}.servicebus.windows.net/;SharedAccessKeyName=...;SharedAccessKey=...</c>.</summary>
    public string? ConnectionString { get; set; }

    /// <summary>
    /// The administration API's connection string, where it differs from <see cref="ConnectionString"/>:
    /// the official emulator (and the test endpoint) serve it on a port of its own (5300). Default: the same.
    /// </summary>
    public string? AdministrationConnectionString { get; set; }

    /// <summary>The namespace's host name, e.g. <c>contoso.servicebus.windows.net</c>, for an identity's token.</summary>
    public string? FullyQualifiedNamespace { get; set; }

    /// <summary>Client id of a user-assigned managed identity, when the pod has several; workload identity sets <c>AZURE_CLIENT_ID</c> itself.</summary>
    public string? ManagedIdentityClientId { get; set; }

    /// <summary>Prefix of queue names. Default <c>queue-</c>: queues <c>queue-tasks</c> and <c>queue-events</c>.</summary>
    [RegularExpression("^[A-Za-z0-9._-]*$")]
    public string QueuePrefix { get; set; } = "queue-";

    /// <summary>
    /// Messages the tasks receiver pulls ahead of the worker's slots. Default 0: the worker's slots (its
    /// first receive asks for all of them). The events receiver never pulls ahead, so a deposed leader
    /// holds nothing it could not hand back.
    /// </summary>
    [Range(0, 10_000)]
    public int Prefetch { get; set; }

    /// <summary>Retries of a transient failure (busy, timeout, a dropped connection), by the SDK with exponential back-off. Default 3.</summary>
    [Range(0, 20)]
    public int MaxRetries { get; set; } = 3;

    /// <summary>First retry delay; it doubles per retry. Default 0.2 s.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:01:00")]
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>Time limit of one try of an operation (the SDK's try timeout). Default 30 s.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:10:00")]
    public TimeSpan TryTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Whether to read each queue's settings (lock duration, max delivery count) and depth through the
    /// administration API at start. Needs the Manage right (or the Data Owner role); without it the engine
    /// trusts the settings deploy/ documents and counts depth from the job store. Default true.
    /// </summary>
    public bool ReadEntitySettings { get; set; } = true;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        // The message names the missing setting, never a secret's value.
        if (ConnectionString is null && string.IsNullOrWhiteSpace(FullyQualifiedNamespace))
        {
            yield return new ValidationResult("Queue:ServiceBus needs a ConnectionString, or a FullyQualifiedNamespace (with an identity).");
        }
    }
}
