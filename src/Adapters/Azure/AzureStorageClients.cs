using System.Net;
using Azure;
using Azure.Core;
using Azure.Identity;
using Azure.Storage;
using Azure.Storage.Blobs;
using Azure.Storage.Queues;
using Microsoft.Extensions.Options;
using Queue.Contracts.Ports;

namespace Queue.Adapters.Azure;

/// <summary>
/// The SDK's service clients for the configured account, with its retry policy (exponential back-off on
/// 5xx, 408, timeouts and dropped connections) and the credential the options name. Errors that remain
/// after the SDK's retries are translated here: service faults to the port's
/// <see cref="BrokerUnavailableException"/>, refusals to an <see cref="AzureStorageException"/> naming the
/// service's error code and request id.
/// </summary>
public sealed class AzureStorageClients
{
    public AzureStorageClients(IOptions<AzureStorageOptions> options)
    {
        Options = options.Value;
        var blobOptions = new BlobClientOptions();
        var queueOptions = new QueueClientOptions { MessageEncoding = QueueMessageEncoding.Base64 };
        foreach (var client in new ClientOptions[] { blobOptions, queueOptions })
        {
            client.Retry.Mode = RetryMode.Exponential;
            client.Retry.MaxRetries = Options.MaxRetries;
            client.Retry.Delay = Options.RetryDelay;
            client.Retry.MaxDelay = TimeSpan.FromSeconds(10);
            client.Retry.NetworkTimeout = Options.RequestTimeout;
        }
        if (Options.ConnectionString is { } connection)
        {
            Blobs = new BlobServiceClient(connection, blobOptions);
            Queues = new QueueServiceClient(connection, queueOptions);
            Credential = "connection string";
        }
        else if (Options.SasToken is { } sas)
        {
            var credential = new AzureSasCredential(sas.TrimStart('?'));
            Blobs = new BlobServiceClient(Options.BlobServiceUri(), credential, blobOptions);
            Queues = new QueueServiceClient(Options.QueueServiceUri(), credential, queueOptions);
            Credential = "SAS token";
        }
        else if (Options.AccountKey is { } key)
        {
            var credential = new StorageSharedKeyCredential(Options.AccountName, key);
            Blobs = new BlobServiceClient(Options.BlobServiceUri(), credential, blobOptions);
            Queues = new QueueServiceClient(Options.QueueServiceUri(), credential, queueOptions);
            Credential = "account key";
        }
        else
        {
            // Workload identity (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE), managed identity, az login...
            var credential = new DefaultAzureCredential(new DefaultAzureCredentialOptions { ManagedIdentityClientId = Options.ManagedIdentityClientId });
            Blobs = new BlobServiceClient(Options.BlobServiceUri(), credential, blobOptions);
            Queues = new QueueServiceClient(Options.QueueServiceUri(), credential, queueOptions);
            Credential = "DefaultAzureCredential";
        }
    }

    public AzureStorageOptions Options { get; }

    public BlobServiceClient Blobs { get; }

    public QueueServiceClient Queues { get; }

    /// <summary>Which credential the clients use (for the start-up log; never the secret).</summary>
    public string Credential { get; }

    /// <summary>Runs an SDK call, translating what is left after the SDK's retries.</summary>
    public static Task<T> CallAsync<T>(string what, Func<Task<T>> call, CancellationToken cancellationToken) =>
        AdapterCalls.RunAsync(call, e => Translate(e, what, cancellationToken));

    public static Task CallAsync(string what, Func<Task> call, CancellationToken cancellationToken) =>
        AdapterCalls.RunAsync(call, e => Translate(e, what, cancellationToken));

    /// <summary>The port's view of an SDK failure, or null to let it pass (cancellation by the caller, our own exceptions).</summary>
    public static Exception? Translate(Exception e, string what, CancellationToken cancellationToken)
    {
        switch (e)
        {
            case OperationCanceledException when cancellationToken.IsCancellationRequested:
            case LeaseLostException or BrokerUnavailableException or AzureStorageException or BlobNotFoundException or InvalidBlobNameException:
                return null;
            case RequestFailedException failed when failed.Status is 0 or 408 or >= 500:
                return new BrokerUnavailableException("Azure Storage", $"{what} failed after retries: {Describe(failed)}", AzureStorageException.From(failed, what));
            case RequestFailedException failed:
                return AzureStorageException.From(failed, what);
            case AuthenticationFailedException or CredentialUnavailableException:
                return new AzureStorageException($"Azure Storage: no credential for {what}: {e.Message}", HttpStatusCode.Unauthorized, "NoCredential");
            case AggregateException or HttpRequestException or IOException or TimeoutException or OperationCanceledException:
                return new BrokerUnavailableException("Azure Storage", $"{what} failed after retries: {e.Message}", e);
            default:
                return null;
        }
    }

    private static string Describe(RequestFailedException failed) =>
        failed.Status == 0 ? failed.Message : $"{failed.Status} {failed.ErrorCode}";
}

/// <summary>Azure Storage refused a request (after any retries): status, the service's error code and request id, never a secret.</summary>
public sealed class AzureStorageException(string message, HttpStatusCode status, string? errorCode) : Exception(message)
{
    public HttpStatusCode Status { get; } = status;

    public string? ErrorCode { get; } = errorCode;

    public static AzureStorageException From(RequestFailedException failed, string what)
    {
        var requestId = failed.GetRawResponse()?.Headers.RequestId ?? "none";
        var hint = failed.Status == 403
            ? " Check the account name and key, the SAS, or the identity's role assignment (Storage Blob / Queue Data Contributor)."
            : "";
        return new AzureStorageException($"Azure Storage refused {what}: {failed.Status} {failed.ErrorCode}.{hint} (request id {requestId})",
            (HttpStatusCode)failed.Status, failed.ErrorCode);
    }
}
