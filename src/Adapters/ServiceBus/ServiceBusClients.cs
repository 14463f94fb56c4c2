using Azure;
using Azure.Core;
using Azure.Identity;
using Azure.Messaging.ServiceBus;
using Azure.Messaging.ServiceBus.Administration;
using Microsoft.Extensions.Options;
using Queue.Contracts.Ports;

namespace Queue.Adapters.ServiceBus;

/// <summary>
/// One <see cref="ServiceBusClient"/> (one AMQP connection) per process, with the SDK's retry policy,
/// and the administration client that reads the queues' settings. Errors left after the SDK's retries
/// are translated here: transient ones and lost connections to the port's
/// <see cref="BrokerUnavailableException"/>, a lost lock to <see cref="LeaseLostException"/>.
/// </summary>
public sealed class ServiceBusClients : IAsyncDisposable
{
    public ServiceBusClients(IOptions<ServiceBusOptions> options)
    {
        Options = options.Value;
        var retry = new ServiceBusRetryOptions
        {
            Mode = ServiceBusRetryMode.Exponential,
            MaxRetries = Options.MaxRetries,
            Delay = Options.RetryDelay,
            MaxDelay = TimeSpan.FromSeconds(10),
            TryTimeout = Options.TryTimeout,
        };
        var clientOptions = new ServiceBusClientOptions { TransportType = ServiceBusTransportType.AmqpTcp, RetryOptions = retry };
        var adminOptions = new ServiceBusAdministrationClientOptions();
        adminOptions.Retry.MaxRetries = Options.MaxRetries;
        adminOptions.Retry.Delay = Options.RetryDelay;
        adminOptions.Retry.NetworkTimeout = Options.TryTimeout;
        if (Options.ConnectionString is { } connection)
        {
            Client = new ServiceBusClient(connection, clientOptions);
            Administration = new ServiceBusAdministrationClient(Options.AdministrationConnectionString ?? connection, adminOptions);
        }
        else
        {
            // Workload identity (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE), managed identity, az login...
            TokenCredential credential = new DefaultAzureCredential(new DefaultAzureCredentialOptions { ManagedIdentityClientId = Options.ManagedIdentityClientId });
            Client = new ServiceBusClient(Options.FullyQualifiedNamespace, credential, clientOptions);
            Administration = new ServiceBusAdministrationClient(Options.FullyQualifiedNamespace, credential, adminOptions);
        }
    }

    public ServiceBusOptions Options { get; }

    public ServiceBusClient Client { get; }

    public ServiceBusAdministrationClient Administration { get; }

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
            case LeaseLostException or BrokerUnavailableException or ServiceBusRefusedException:
                return null;
            case ServiceBusException { Reason: ServiceBusFailureReason.MessageLockLost or ServiceBusFailureReason.SessionLockLost }:
                return new LeaseLostException($"Service Bus: the lock {what} has ended; the queue redelivers the message.");
            case ServiceBusException { Reason: ServiceBusFailureReason.ServiceCommunicationProblem or ServiceBusFailureReason.ServiceBusy or ServiceBusFailureReason.ServiceTimeout } sb:
                return new BrokerUnavailableException("Azure Service Bus", $"{what} failed after retries: {sb.Reason}: {sb.Message}", e);
            case ServiceBusException { IsTransient: true } sb:
                return new BrokerUnavailableException("Azure Service Bus", $"{what} failed after retries: {sb.Reason}: {sb.Message}", e);
            case ServiceBusException { Reason: ServiceBusFailureReason.MessagingEntityNotFound } sb:
                return new ServiceBusRefusedException($"Azure Service Bus refused {what}: {sb.Reason}: {sb.Message}", e) { EntityMissing = true };
            case ServiceBusException sb:
                return new ServiceBusRefusedException($"Azure Service Bus refused {what}: {sb.Reason}: {sb.Message}", e);
            case UnauthorizedAccessException:
                return new ServiceBusRefusedException($"Azure Service Bus refused {what}: not authorized. Check the SAS policy's rights or the identity's role (Azure Service Bus Data Sender / Receiver).", e) { NotAuthorized = true };
            case AuthenticationFailedException or CredentialUnavailableException:
                return new ServiceBusRefusedException($"Azure Service Bus: no credential for {what}: {e.Message}", e);
            case RequestFailedException failed when failed.Status is 0 or 408 or >= 500:
                return new BrokerUnavailableException("Azure Service Bus", $"{what} failed after retries: {failed.Status} {failed.ErrorCode}", e);
            case RequestFailedException failed:
                return new ServiceBusRefusedException($"Azure Service Bus refused {what}: {failed.Status} {failed.ErrorCode}", e)
                {
                    NotAuthorized = failed.Status is 401 or 403,
                    EntityMissing = failed.Status == 404,
                };
            case TimeoutException or IOException or System.Net.Sockets.SocketException or ObjectDisposedException:
                return new BrokerUnavailableException("Azure Service Bus", $"{what} failed after retries: {e.Message}", e);
            default:
                return null;
        }
    }

    public async ValueTask DisposeAsync() => await Client.DisposeAsync();
}

/// <summary>Service Bus refused a call (after any retries): not authorized, an entity that does not exist, a message too large.</summary>
public sealed class ServiceBusRefusedException(string message, Exception? inner = null) : BrokerRefusedException(message, inner)
{
    /// <summary>The credential was refused or lacks the right (for the administration API: Manage).</summary>
    public bool NotAuthorized { get; init; }

    /// <summary>The queue does not exist.</summary>
    public bool EntityMissing { get; init; }
}
