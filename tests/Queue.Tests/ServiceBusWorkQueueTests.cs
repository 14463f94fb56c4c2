using Azure.Messaging.ServiceBus;
using Microsoft.Extensions.Options;
using Queue.Adapters.ServiceBus;
using Queue.Contracts.Ports;
using Queue.ServiceBusEndpoint;

namespace Queue.Tests;

/// <summary>
/// Where the Service Bus tests run: a real namespace or the official emulator when
/// <c>QUEUE_TEST_SERVICEBUS</c> holds its connection string (with <c>QUEUE_TEST_SERVICEBUS_ADMIN</c> for
/// the emulator's administration port; the queues <c>conformance-1</c>… must exist there, see
/// deploy/README.md), else the test endpoint on loopback.
/// </summary>
public sealed class ServiceBusFixture : IDisposable
{
    public ServiceBusFixture()
    {
        if (Environment.GetEnvironmentVariable("QUEUE_TEST_SERVICEBUS") is { Length: > 0 } real)
        {
            ConnectionString = real;
            AdministrationConnectionString = Environment.GetEnvironmentVariable("QUEUE_TEST_SERVICEBUS_ADMIN") is { Length: > 0 } admin ? admin : null;
            return;
        }
        Endpoint = ServiceBusTestEndpoint.Start();
        ConnectionString = Endpoint.ConnectionString();
        AdministrationConnectionString = Endpoint.AdministrationConnectionString();
    }

    /// <summary>The test endpoint; null against a real namespace.</summary>
    public ServiceBusTestEndpoint? Endpoint { get; }

    public string ConnectionString { get; }

    public string? AdministrationConnectionString { get; }

    private int queues;

    /// <summary>A fresh queue on the test endpoint; on a real namespace the next of the pre-made <c>conformance-N</c> ones.</summary>
    public string NewQueue(TimeSpan lockDuration, int maxDeliveryCount)
    {
        var name = Endpoint is null ? $"conformance-{Interlocked.Increment(ref queues)}" : Guid.NewGuid().ToString("N");
        Endpoint?.CreateQueue(name, lockDuration, maxDeliveryCount);
        return name;
    }

    public void Dispose() => Endpoint?.Dispose();
}

[CollectionDefinition("servicebus")]
public sealed class ServiceBusCollection : ICollectionFixture<ServiceBusFixture>;

/// <summary>The work-queue conformance suite against the Service Bus adapter (Azure.Messaging.ServiceBus) on the test endpoint, or a real namespace.</summary>
[Collection("servicebus")]
public sealed class ServiceBusWorkQueueTests(ServiceBusFixture bus) : WorkQueueConformance, IAsyncLifetime
{
    private readonly List<IAsyncDisposable> owned = [];

    protected override Task<IWorkQueue> CreateQueueAsync(TimeSpan leaseDuration, int maxDeliveryCount)
    {
        var name = bus.NewQueue(leaseDuration, maxDeliveryCount);
        return Task.FromResult<IWorkQueue>(Open(name, leaseDuration, maxDeliveryCount));
    }

    /// <summary>Another process's receiver: its own client (AMQP connection).</summary>
    protected override Task<IWorkQueue> OtherReceiverAsync(IWorkQueue queue, TimeSpan leaseDuration) =>
        Task.FromResult<IWorkQueue>(Open(((ServiceBusWorkQueue)queue).Entity, leaseDuration, 10));

    private ServiceBusWorkQueue Open(string entity, TimeSpan leaseDuration, int maxDeliveryCount, string? connectionString = null, string? prefixedName = null)
    {
        var clients = new ServiceBusClients(Options.Create(new ServiceBusOptions
        {
            ConnectionString = connectionString ?? bus.ConnectionString,
            AdministrationConnectionString = connectionString is null ? bus.AdministrationConnectionString : null,
            QueuePrefix = "",
            MaxRetries = 1,
            TryTimeout = TimeSpan.FromSeconds(10),
        }));
        var queue = new ServiceBusWorkQueue(prefixedName ?? entity, clients,
            Options.Create(new WorkQueueOptions { LeaseDuration = leaseDuration, MaxDeliveryCount = maxDeliveryCount }));
        owned.Add(queue);
        owned.Add(clients);
        return queue;
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var item in owned)
        {
            await item.DisposeAsync();
        }
    }
}
