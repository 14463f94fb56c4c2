using Azure.Messaging.ServiceBus;
using Azure.Messaging.ServiceBus.Administration;
using Microsoft.Extensions.Options;
using Queue.Adapters.ServiceBus;
using Queue.Contracts.Ports;
using Queue.ServiceBusEndpoint;

namespace Queue.Tests;

/// <summary>
/// Where the Service Bus tests run: the test endpoint on loopback, its queues made directly, unless
/// <c>QUEUE_TEST_SERVICEBUS</c> holds a namespace's connection string (a policy with Manage; with
/// <c>QUEUE_TEST_SERVICEBUS_ADMIN</c> for the official emulator's administration port): then the queues are
/// made through the administration API (<c>CreateQueueAsync</c>, a lock of at least Service Bus's 5 s),
/// one per test, and deleted at the end.
/// </summary>
public class ServiceBusFixture : IAsyncLifetime
{
    private readonly ServiceBusAdministrationClient? administration;
    private readonly System.Collections.Concurrent.ConcurrentBag<string> made = [];

    public ServiceBusFixture()
        : this(throughAdministration: false)
    {
    }

    /// <param name="throughAdministration">On the test endpoint too, make queues as on a real namespace.</param>
    protected ServiceBusFixture(bool throughAdministration)
    {
        if (Environment.GetEnvironmentVariable("QUEUE_TEST_SERVICEBUS") is { Length: > 0 } real)
        {
            ConnectionString = real;
            AdministrationConnectionString = Environment.GetEnvironmentVariable("QUEUE_TEST_SERVICEBUS_ADMIN") is { Length: > 0 } admin ? admin : null;
            administration = new ServiceBusAdministrationClient(AdministrationConnectionString ?? real);
            return;
        }
        Endpoint = ServiceBusTestEndpoint.Start();
        ConnectionString = Endpoint.ConnectionString();
        AdministrationConnectionString = Endpoint.AdministrationConnectionString();
        if (throughAdministration)
        {
            administration = new ServiceBusAdministrationClient(AdministrationConnectionString);
        }
    }

    /// <summary>The test endpoint; null against a real namespace.</summary>
    public ServiceBusTestEndpoint? Endpoint { get; }

    public string ConnectionString { get; }

    public string? AdministrationConnectionString { get; }

    /// <summary>The shortest lock a queue gets: Service Bus's minimum (5 s) where queues are made as on a namespace.</summary>
    public TimeSpan ShortestLock => administration is null ? TimeSpan.FromSeconds(1) : TimeSpan.FromSeconds(5);

    /// <summary>A fresh queue with the lock duration (at least <see cref="ShortestLock"/>) and delivery limit asked for.</summary>
    public async Task<string> NewQueueAsync(TimeSpan lockDuration, int maxDeliveryCount)
    {
        var name = $"conformance-{Guid.NewGuid():N}";
        if (administration is null)
        {
            Endpoint!.CreateQueue(name, lockDuration, maxDeliveryCount);
            return name;
        }
        await administration.CreateQueueAsync(new CreateQueueOptions(name)
        {
            LockDuration = lockDuration < ShortestLock ? ShortestLock : lockDuration,
            MaxDeliveryCount = maxDeliveryCount,
        });
        made.Add(name);
        return name;
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var name in made)
        {
            await administration!.DeleteQueueAsync(name);
        }
        Endpoint?.Dispose();
    }
}

/// <summary>The test endpoint with its queues made through the administration API, as on a real namespace.</summary>
public sealed class AdministeredServiceBusFixture() : ServiceBusFixture(throughAdministration: true);

[CollectionDefinition("servicebus")]
public sealed class ServiceBusCollection : ICollectionFixture<ServiceBusFixture>;

[CollectionDefinition("servicebus-administered")]
public sealed class AdministeredServiceBusCollection : ICollectionFixture<AdministeredServiceBusFixture>;

/// <summary>Work queues on their own clients (one AMQP connection each, as separate processes have), disposed with their owner.</summary>
public sealed class OwnedServiceBusQueues : IAsyncDisposable
{
    private readonly List<IAsyncDisposable> owned = [];

    public ServiceBusWorkQueue Open(ServiceBusOptions options, string name, TimeSpan leaseDuration, int maxDeliveryCount)
    {
        var clients = new ServiceBusClients(Options.Create(options));
        var queue = new ServiceBusWorkQueue(name, clients, Options.Create(new WorkQueueOptions { LeaseDuration = leaseDuration, MaxDeliveryCount = maxDeliveryCount }));
        owned.Add(queue);
        owned.Add(clients);
        return queue;
    }

    /// <summary>Closes one queue early (its clients stay open till the end), as a worker that goes away.</summary>
    public async Task CloseAsync(ServiceBusWorkQueue queue)
    {
        owned.Remove(queue);
        await queue.DisposeAsync();
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var item in owned)
        {
            await item.DisposeAsync();
        }
    }
}

/// <summary>The work-queue conformance suite against the Service Bus adapter (Azure.Messaging.ServiceBus).</summary>
public abstract class ServiceBusConformance(ServiceBusFixture bus) : WorkQueueConformance, IAsyncLifetime
{
    private readonly OwnedServiceBusQueues owned = new();

    protected override TimeSpan Lease => bus.ShortestLock;

    protected override async Task<IWorkQueue> CreateQueueAsync(TimeSpan leaseDuration, int maxDeliveryCount)
    {
        var name = await bus.NewQueueAsync(leaseDuration, maxDeliveryCount);
        return Open(name, leaseDuration, maxDeliveryCount);
    }

    /// <summary>Another process's receiver: its own client (AMQP connection).</summary>
    protected override Task<IWorkQueue> OtherReceiverAsync(IWorkQueue queue, TimeSpan leaseDuration) =>
        Task.FromResult<IWorkQueue>(Open(((ServiceBusWorkQueue)queue).Entity, leaseDuration, 10));

    private ServiceBusWorkQueue Open(string entity, TimeSpan leaseDuration, int maxDeliveryCount) =>
        owned.Open(new ServiceBusOptions
        {
            ConnectionString = bus.ConnectionString,
            AdministrationConnectionString = bus.AdministrationConnectionString,
            QueuePrefix = "",
            MaxRetries = 1,
            TryTimeout = TimeSpan.FromSeconds(10),
        }, entity, leaseDuration, maxDeliveryCount);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await owned.DisposeAsync();
}

/// <summary>On the test endpoint (or a real namespace, see <see cref="ServiceBusFixture"/>).</summary>
[Collection("servicebus")]
public sealed class ServiceBusWorkQueueTests(ServiceBusFixture bus) : ServiceBusConformance(bus);

/// <summary>
/// The same on the test endpoint with its queues made by the SDK's administration client and Service Bus's
/// 5 s shortest lock: the path a run against a real namespace takes.
/// </summary>
[Collection("servicebus-administered")]
public sealed class ServiceBusAdministeredWorkQueueTests(AdministeredServiceBusFixture bus) : ServiceBusConformance(bus);

/// <summary>What the adapter does at the edges, on the test endpoint: credentials, outages, the entity's settings, lost locks, and the endpoint's strictness.</summary>
[Collection("servicebus")]
public sealed class ServiceBusAdapterTests(ServiceBusFixture bus) : IAsyncLifetime
{
    private readonly OwnedServiceBusQueues owned = new();

    private ServiceBusTestEndpoint Endpoint => bus.Endpoint ?? throw new InvalidOperationException("These tests need the test endpoint.");

    private ServiceBusWorkQueue Open(string entity, TimeSpan lease, int maxDeliveryCount, string? connection = null, string? administration = null, string prefix = "") =>
        owned.Open(new ServiceBusOptions
        {
            ConnectionString = connection ?? Endpoint.ConnectionString(),
            AdministrationConnectionString = administration ?? Endpoint.AdministrationConnectionString(),
            QueuePrefix = prefix,
            MaxRetries = 1,
            RetryDelay = TimeSpan.FromMilliseconds(50),
            TryTimeout = TimeSpan.FromSeconds(5),
        }, entity, lease, maxDeliveryCount);

    [Fact]
    public async Task AWrongKeyIsRefusedWithAClearErrorNotRetriedForever()
    {
        var name = await bus.NewQueueAsync(TimeSpan.FromSeconds(30), 10);
        var wrong = $"Endpoint=sb://127.0.0.1:{Endpoint.AmqpPort};SharedAccessKeyName={ServiceBusTestEndpoint.RootPolicy};SharedAccessKey={Convert.ToBase64String(new byte[32])};UseDevelopmentEmulator=true";
        var queue = Open(name, TimeSpan.FromSeconds(30), 10, connection: wrong);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var refused = await Assert.ThrowsAsync<ServiceBusRefusedException>(() => queue.SendAsync("x"u8.ToArray(), CancellationToken.None));
        Assert.Contains("not authorized", refused.Message, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain(Endpoint.Policies[0].Key, refused.ToString(), StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"Refusal took {watch.Elapsed}.");
        // The start-up check says so too (the service then stops with exit code 78).
        await Assert.ThrowsAsync<ServiceBusRefusedException>(() => queue.CheckEntityAsync(CancellationToken.None));
    }

    [Fact]
    public async Task ANamespaceThatDoesNotAnswerIsBrokerUnavailable()
    {
        int port;
        using (var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        }
        var nobody = $"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=x;SharedAccessKey={Convert.ToBase64String(new byte[32])};UseDevelopmentEmulator=true";
        var queue = Open("tasks", TimeSpan.FromSeconds(30), 10, connection: nobody);
        await Assert.ThrowsAsync<BrokerUnavailableException>(() => queue.SendAsync("x"u8.ToArray(), CancellationToken.None));
    }

    [Fact]
    public async Task TheEntitysSettingsAreCheckedAgainstTheEnginesLimits()
    {
        var fine = Open(await bus.NewQueueAsync(TimeSpan.FromSeconds(10), 100), TimeSpan.FromSeconds(10), 100);
        var check = await fine.CheckEntityAsync(CancellationToken.None);
        Assert.Null(check.Problem);
        Assert.Equal("lock 10 s, max delivery count 100", check.Settings);

        var fewDeliveries = await Open(await bus.NewQueueAsync(TimeSpan.FromSeconds(10), 10), TimeSpan.FromSeconds(10), 100).CheckEntityAsync(CancellationToken.None);
        Assert.Contains("MaxDeliveryCount is 10, below Queue:WorkQueue:MaxDeliveryCount (100)", fewDeliveries.Problem, StringComparison.Ordinal);

        var longLock = await Open(await bus.NewQueueAsync(TimeSpan.FromMinutes(5), 100), TimeSpan.FromSeconds(30), 100).CheckEntityAsync(CancellationToken.None);
        Assert.Contains("LockDuration (300 s) is longer than Queue:WorkQueue:LeaseDuration (30 s)", longLock.Problem, StringComparison.Ordinal);

        var missing = await Open("no-such-queue", TimeSpan.FromSeconds(30), 100).CheckEntityAsync(CancellationToken.None);
        Assert.Contains("'no-such-queue' does not exist", missing.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WithoutTheManageRightSettingsAreTrustedAndDepthIsUnknown()
    {
        var name = await bus.NewQueueAsync(TimeSpan.FromSeconds(30), 100);
        var queue = Open(name, TimeSpan.FromSeconds(30), 100, Endpoint.ConnectionString("send-listen"), Endpoint.AdministrationConnectionString("send-listen"));
        var check = await queue.CheckEntityAsync(CancellationToken.None);
        Assert.Null(check.Problem);
        Assert.Contains("no Manage right", check.Settings, StringComparison.Ordinal);
        await Assert.ThrowsAsync<QueueDepthUnknownException>(() => queue.GetDepthAsync(CancellationToken.None));
        // Sending and receiving need only Send and Listen.
        await queue.SendAsync("x"u8.ToArray(), CancellationToken.None);
        var message = Assert.Single(await queue.ReceiveAsync(1, TimeSpan.FromSeconds(5), CancellationToken.None));
        await message.CompleteAsync(CancellationToken.None);
    }

    [Fact]
    public async Task RenewingALockThatExpiredIsALostLeaseAndTheNextReceiverGetsItAgain()
    {
        var queue = Open(await bus.NewQueueAsync(TimeSpan.FromSeconds(1), 10), TimeSpan.FromSeconds(1), 10);
        await queue.SendAsync("r"u8.ToArray(), CancellationToken.None);
        var first = Assert.Single(await queue.ReceiveAsync(1, TimeSpan.FromSeconds(5), CancellationToken.None));
        await Task.Delay(1500);
        await Assert.ThrowsAsync<LeaseLostException>(() => first.RenewLockAsync(CancellationToken.None));
        var again = Assert.Single(await queue.ReceiveAsync(1, TimeSpan.FromSeconds(5), CancellationToken.None));
        Assert.Equal(2, again.DeliveryCount);
        Assert.True(again.LockedUntil > DateTimeOffset.UtcNow);
        await again.CompleteAsync(CancellationToken.None);
    }

    [Fact]
    public async Task StoppingHandsBackWhatWasReceivedButNotSettledAndItsSettlingIsALostLease()
    {
        var name = await bus.NewQueueAsync(TimeSpan.FromSeconds(30), 10);
        var queue = Open(name, TimeSpan.FromSeconds(30), 10);
        await queue.SendAsync("held"u8.ToArray(), CancellationToken.None);
        var held = Assert.Single(await queue.ReceiveAsync(1, TimeSpan.FromSeconds(5), CancellationToken.None));
        await queue.StopReceivingAsync(deadLetters: false, CancellationToken.None);
        var next = Open(name, TimeSpan.FromSeconds(30), 10);
        var again = Assert.Single(await next.ReceiveAsync(1, TimeSpan.FromSeconds(5), CancellationToken.None));
        Assert.Equal("held", System.Text.Encoding.UTF8.GetString(again.Body.Span));
        Assert.Equal(2, again.DeliveryCount);
        await Assert.ThrowsAsync<LeaseLostException>(() => held.CompleteAsync(CancellationToken.None));
        await again.CompleteAsync(CancellationToken.None);
    }

    [Fact]
    public async Task AWorkerThatGoesAwayHoldingTasksGetsThemRedeliveredAndWhatItPulledAheadBackAtOnce()
    {
        // The tasks receiver pulls ahead to the worker's slots. The tasks a worker took come back once
        // their locks end, with their count raised; those it only held ahead are given back when its
        // receiver closes, uncounted.
        var prefix = $"{Guid.NewGuid():N}-";
        Endpoint.CreateQueue(prefix + QueueNames.Tasks, TimeSpan.FromSeconds(1), 10);
        var dying = Open(QueueNames.Tasks, TimeSpan.FromSeconds(1), 10, prefix: prefix);
        for (var i = 0; i < 4; i++)
        {
            await dying.SendAsync(System.Text.Encoding.UTF8.GetBytes($"t{i}"), CancellationToken.None);
        }
        // Two taken (a worker with two free slots); the receiver's prefetch holds the other two.
        Assert.NotEmpty(await dying.ReceiveAsync(2, TimeSpan.FromSeconds(5), CancellationToken.None));
        await Task.Delay(200);
        await owned.CloseAsync(dying);
        var survivor = Open(QueueNames.Tasks, TimeSpan.FromSeconds(1), 10, prefix: prefix);
        var counts = new List<int>();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (counts.Count < 4 && DateTime.UtcNow < deadline)
        {
            foreach (var message in await survivor.ReceiveAsync(4, TimeSpan.FromMilliseconds(500), CancellationToken.None))
            {
                counts.Add(message.DeliveryCount);
                await message.CompleteAsync(CancellationToken.None);
            }
        }
        counts.Sort();
        Assert.Equal([1, 1, 2, 2], counts);
    }

    [Fact]
    public async Task WhatTheEndpointDoesNotImplementFailsLoudly()
    {
        var name = await bus.NewQueueAsync(TimeSpan.FromSeconds(30), 10);
        await using var client = new ServiceBusClient(Endpoint.ConnectionString(), new ServiceBusClientOptions { RetryOptions = new ServiceBusRetryOptions { MaxRetries = 0, TryTimeout = TimeSpan.FromSeconds(5) } });
        await using var sender = client.CreateSender(name);
        await sender.SendMessageAsync(new ServiceBusMessage("m"));
        await using var deleting = client.CreateReceiver(name, new ServiceBusReceiverOptions { ReceiveMode = ServiceBusReceiveMode.ReceiveAndDelete });
        await Assert.ThrowsAnyAsync<Exception>(() => deleting.ReceiveMessagesAsync(1, TimeSpan.FromSeconds(2)));
        await using var locking = client.CreateReceiver(name);
        await Assert.ThrowsAsync<NotSupportedException>(() => locking.PeekMessageAsync());
        var scheduled = await Assert.ThrowsAnyAsync<Exception>(() => sender.ScheduleMessageAsync(new ServiceBusMessage("later"), DateTimeOffset.UtcNow.AddMinutes(1)));
        Assert.IsNotType<TimeoutException>(scheduled);
        var message = Assert.Single(await locking.ReceiveMessagesAsync(1, TimeSpan.FromSeconds(5)));
        await Assert.ThrowsAsync<NotSupportedException>(() => locking.DeferMessageAsync(message));
        await locking.CompleteMessageAsync(message);
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await owned.DisposeAsync();
}
