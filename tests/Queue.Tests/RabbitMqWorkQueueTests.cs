using Microsoft.Extensions.Options;
using Queue.Adapters.RabbitMq;
using Queue.Contracts.Ports;
using Queue.Tests.Infrastructure;

namespace Queue.Tests;

public sealed class RabbitMqFixture : IAsyncLifetime
{
    public RabbitMqServer Server { get; private set; } = null!;

    public async Task InitializeAsync() => Server = await RabbitMqServer.StartAsync();

    public async Task DisposeAsync() => await Server.DisposeAsync();
}

[CollectionDefinition("rabbitmq")]
public sealed class RabbitMqCollection : ICollectionFixture<RabbitMqFixture>;

/// <summary>The work-queue conformance suite against a real RabbitMQ; lease loss is a dropped connection.</summary>
[Collection("rabbitmq")]
public sealed class RabbitMqWorkQueueTests(RabbitMqFixture rabbit) : WorkQueueConformance, IAsyncLifetime
{
    private readonly List<RabbitMqWorkQueue> queues = [];

    protected override Task<IWorkQueue> CreateQueueAsync(TimeSpan leaseDuration, int maxDeliveryCount) =>
        Task.FromResult<IWorkQueue>(Open(Guid.NewGuid().ToString("N"), leaseDuration, maxDeliveryCount));

    protected override Task<IWorkQueue> OtherReceiverAsync(IWorkQueue queue, TimeSpan leaseDuration) =>
        Task.FromResult<IWorkQueue>(Open(queue.Name, leaseDuration, 10));

    private RabbitMqWorkQueue Open(string name, TimeSpan leaseDuration, int maxDeliveryCount)
    {
        var queue = new RabbitMqWorkQueue(name,
            Options.Create(new RabbitMqOptions { ConnectionString = rabbit.Server.ConnectionString, QueuePrefix = "test.", Prefetch = 10 }),
            Options.Create(new WorkQueueOptions { LeaseDuration = leaseDuration, MaxDeliveryCount = maxDeliveryCount }));
        queues.Add(queue);
        return queue;
    }

    [Fact]
    public async Task StoppingHandsBackWhatWasReceivedButNotSettledAndItsSettlingIsALostLease()
    {
        var queue = Open(Guid.NewGuid().ToString("N"), TimeSpan.FromSeconds(30), 10);
        await queue.SendAsync("held"u8.ToArray(), CancellationToken.None);
        var held = Assert.Single(await queue.ReceiveAsync(1, TimeSpan.FromSeconds(5), CancellationToken.None));
        await queue.StopReceivingAsync(deadLetters: false, CancellationToken.None);
        var next = Open(queue.Name, TimeSpan.FromSeconds(30), 10);
        var again = Assert.Single(await next.ReceiveAsync(1, TimeSpan.FromSeconds(5), CancellationToken.None));
        Assert.Equal("held", System.Text.Encoding.UTF8.GetString(again.Body.Span));
        Assert.Equal(2, again.DeliveryCount);
        // The first holder must not be able to ack a delivery the broker has taken back.
        await Assert.ThrowsAsync<LeaseLostException>(() => held.CompleteAsync(CancellationToken.None));
        await again.CompleteAsync(CancellationToken.None);
    }

    /// <summary>RabbitMQ ends a lease when the holder's connection closes, as when a worker crashes.</summary>
    protected override Task LoseLeaseAsync(IWorkQueue queue, ILeasedMessage message) => ((RabbitMqWorkQueue)queue).DropConnectionAsync();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var queue in queues)
        {
            await queue.DisposeAsync();
        }
    }
}
