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

    protected override Task<IWorkQueue> CreateQueueAsync(TimeSpan leaseDuration, int maxDeliveryCount)
    {
        var queue = new RabbitMqWorkQueue(Guid.NewGuid().ToString("N"),
            Options.Create(new RabbitMqOptions { ConnectionString = rabbit.Server.ConnectionString, QueuePrefix = "test.", Prefetch = 10 }),
            Options.Create(new WorkQueueOptions { LeaseDuration = leaseDuration, MaxDeliveryCount = maxDeliveryCount }));
        queues.Add(queue);
        return Task.FromResult<IWorkQueue>(queue);
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
