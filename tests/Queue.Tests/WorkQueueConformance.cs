using System.Text;
using Queue.Contracts.Ports;

namespace Queue.Tests;

/// <summary>
/// The behaviour every work-queue adapter must show. Each adapter's test class derives from this and
/// creates a fresh queue per test with a short lease.
/// </summary>
public abstract class WorkQueueConformance
{
    /// <summary>The short lease most tests use (brokers with a longer minimum lock override it).</summary>
    protected virtual TimeSpan Lease => TimeSpan.FromSeconds(1);

    /// <summary>A new, empty queue with the given lease and delivery limit.</summary>
    protected abstract Task<IWorkQueue> CreateQueueAsync(TimeSpan leaseDuration, int maxDeliveryCount);

    /// <summary>Ends a receiver's hold on a message the way a crashed worker would (for timer-based queues: let the lease lapse).</summary>
    protected virtual Task LoseLeaseAsync(IWorkQueue queue, ILeasedMessage message) => Task.Delay(Lease + TimeSpan.FromMilliseconds(500));

    /// <summary>Another receiver of the same queue, as a second process would have (the same instance for in-process queues).</summary>
    protected virtual Task<IWorkQueue> OtherReceiverAsync(IWorkQueue queue, TimeSpan leaseDuration) => Task.FromResult(queue);

    private static ReadOnlyMemory<byte> Body(string text) => Encoding.UTF8.GetBytes(text);

    private static string Text(ILeasedMessage message) => Encoding.UTF8.GetString(message.Body.Span);

    private static async Task<ILeasedMessage> ReceiveOneAsync(IWorkQueue queue, TimeSpan? wait = null)
    {
        var received = await queue.ReceiveAsync(1, wait ?? TimeSpan.FromSeconds(5), CancellationToken.None);
        Assert.Single(received);
        return received[0];
    }

    [Fact]
    public async Task CompleteRemovesTheMessage()
    {
        var queue = await CreateQueueAsync(Lease, 10);
        await queue.SendAsync(Body("a"), CancellationToken.None);
        var message = await ReceiveOneAsync(queue);
        Assert.Equal("a", Text(message));
        Assert.Equal(1, message.DeliveryCount);
        await message.CompleteAsync(CancellationToken.None);
        await Task.Delay(Lease + TimeSpan.FromMilliseconds(300));
        Assert.Empty(await queue.ReceiveAsync(1, TimeSpan.FromMilliseconds(200), CancellationToken.None));
    }

    [Fact]
    public async Task AnEmptyReceiveWaitsOutAWaitShorterThanAMillisecond()
    {
        // Timers count whole milliseconds: a wait of less used to end at once (QueueWait), and the leader,
        // which receives until its next scan is due, spun through its last millisecond.
        var queue = await CreateQueueAsync(Lease, 10);
        Assert.Empty(await queue.ReceiveAsync(1, TimeSpan.FromMilliseconds(5), CancellationToken.None));
        foreach (var wait in new[] { 0.3, 0.6, 0.9 })
        {
            var watch = System.Diagnostics.Stopwatch.StartNew();
            Assert.Empty(await queue.ReceiveAsync(1, TimeSpan.FromMilliseconds(wait), CancellationToken.None));
            Assert.True(watch.Elapsed.TotalMilliseconds >= wait, $"A {wait} ms receive returned after {watch.Elapsed.TotalMilliseconds:0.000} ms.");
        }
    }

    [Fact]
    public async Task AReceiverThatStopsReceivingLeavesNothingBehindForTheNext()
    {
        // A deposed leader stops receiving: whatever the broker pushed to it ahead and it never took
        // must reach the next receiver at once, not wait in a buffer nobody reads.
        var queue = await CreateQueueAsync(TimeSpan.FromSeconds(30), 10);
        for (var i = 0; i < 5; i++)
        {
            await queue.SendAsync(Body($"m{i}"), CancellationToken.None);
        }
        var first = await ReceiveOneAsync(queue);
        await first.CompleteAsync(CancellationToken.None);
        await queue.StopReceivingAsync(deadLetters: false, CancellationToken.None);
        var next = await OtherReceiverAsync(queue, TimeSpan.FromSeconds(30));
        var taken = new List<string>();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while (taken.Count < 4 && DateTime.UtcNow < deadline)
        {
            foreach (var message in await next.ReceiveAsync(4, TimeSpan.FromMilliseconds(500), CancellationToken.None))
            {
                taken.Add(Text(message));
                await message.CompleteAsync(CancellationToken.None);
            }
        }
        Assert.Equal(4, taken.Count);
        Assert.DoesNotContain(Text(first), taken);
    }

    [Fact]
    public async Task AbandonRedeliversAtOnceWithDeliveryCountPlusOne()
    {
        var queue = await CreateQueueAsync(TimeSpan.FromSeconds(30), 10);
        await queue.SendAsync(Body("b"), CancellationToken.None);
        var first = await ReceiveOneAsync(queue);
        await first.AbandonAsync(CancellationToken.None);
        var second = await ReceiveOneAsync(queue, TimeSpan.FromSeconds(5));
        Assert.Equal("b", Text(second));
        Assert.Equal(2, second.DeliveryCount);
        await second.CompleteAsync(CancellationToken.None);
    }

    [Fact]
    public async Task RedeliversWhenLeaseExpires()
    {
        var queue = await CreateQueueAsync(Lease, 10);
        await queue.SendAsync(Body("c"), CancellationToken.None);
        var first = await ReceiveOneAsync(queue);
        await LoseLeaseAsync(queue, first);
        var second = await ReceiveOneAsync(queue, TimeSpan.FromSeconds(10));
        Assert.Equal("c", Text(second));
        Assert.Equal(first.DeliveryCount + 1, second.DeliveryCount);
        await Assert.ThrowsAsync<LeaseLostException>(() => first.CompleteAsync(CancellationToken.None));
        await second.CompleteAsync(CancellationToken.None);
    }

    [Fact]
    public async Task RenewExtendsTheLease()
    {
        var queue = await CreateQueueAsync(Lease, 10);
        await queue.SendAsync(Body("d"), CancellationToken.None);
        var message = await ReceiveOneAsync(queue);
        var firstLock = message.LockedUntil;
        for (var i = 0; i < 4; i++)
        {
            await Task.Delay(Lease / 2);
            await message.RenewLockAsync(CancellationToken.None);
        }
        Assert.True(message.LockedUntil > firstLock);
        // Held for twice the lease without expiring: nobody else can receive it.
        Assert.Empty(await queue.ReceiveAsync(1, TimeSpan.FromMilliseconds(100), CancellationToken.None));
        await message.CompleteAsync(CancellationToken.None);
    }

    [Fact]
    public async Task DeadLettersWithReasonAfterMaxDeliveries()
    {
        var queue = await CreateQueueAsync(TimeSpan.FromSeconds(30), 2);
        await queue.SendAsync(Body("e"), CancellationToken.None);
        for (var i = 0; i < 2; i++)
        {
            var message = await ReceiveOneAsync(queue);
            await message.AbandonAsync(CancellationToken.None);
        }
        Assert.Empty(await queue.ReceiveAsync(1, TimeSpan.FromMilliseconds(300), CancellationToken.None));
        var dead = await queue.ReceiveDeadLetteredAsync(1, TimeSpan.FromSeconds(5), CancellationToken.None);
        Assert.Single(dead);
        Assert.Equal("e", Text(dead[0]));
        Assert.False(string.IsNullOrEmpty(dead[0].DeadLetterReason));
        await dead[0].CompleteAsync(CancellationToken.None);
    }

    [Fact]
    public async Task ExplicitDeadLetterKeepsReasonAndDescription()
    {
        var queue = await CreateQueueAsync(TimeSpan.FromSeconds(30), 10);
        await queue.SendAsync(Body("f"), CancellationToken.None);
        var message = await ReceiveOneAsync(queue);
        await message.DeadLetterAsync("Poison", "mapper exited 1", CancellationToken.None);
        var depth = await queue.GetDepthAsync(CancellationToken.None);
        Assert.Equal(1, depth.DeadLettered);
        var dead = await queue.ReceiveDeadLetteredAsync(1, TimeSpan.FromSeconds(5), CancellationToken.None);
        Assert.Equal("Poison", dead[0].DeadLetterReason);
        Assert.Equal("mapper exited 1", dead[0].DeadLetterDescription);
        await dead[0].CompleteAsync(CancellationToken.None);
    }

    [Fact]
    public async Task TwoReceiversNeverHoldTheSameMessage()
    {
        var queue = await CreateQueueAsync(TimeSpan.FromSeconds(30), 10);
        const int count = 40;
        for (var i = 0; i < count; i++)
        {
            await queue.SendAsync(Body($"m{i}"), CancellationToken.None);
        }
        var seen = new System.Collections.Concurrent.ConcurrentBag<string>();
        async Task Drain()
        {
            while (true)
            {
                var batch = await queue.ReceiveAsync(3, TimeSpan.FromMilliseconds(500), CancellationToken.None);
                if (batch.Count == 0)
                {
                    return;
                }
                foreach (var message in batch)
                {
                    seen.Add(Text(message));
                    await message.CompleteAsync(CancellationToken.None);
                }
            }
        }
        await Task.WhenAll(Drain(), Drain());
        Assert.Equal(count, seen.Count);
        Assert.Equal(count, seen.Distinct().Count());
    }

    [Fact]
    public async Task DepthReportsActiveLeasedAndDeadLettered()
    {
        var queue = await CreateQueueAsync(TimeSpan.FromSeconds(30), 10);
        for (var i = 0; i < 3; i++)
        {
            await queue.SendAsync(Body($"d{i}"), CancellationToken.None);
        }
        var leased = await ReceiveOneAsync(queue);
        var dead = await ReceiveOneAsync(queue);
        await dead.DeadLetterAsync("Test", null, CancellationToken.None);
        var depth = await WaitForDepthAsync(queue, d => d.Active == 1 && d.Leased == 1 && d.DeadLettered == 1);
        Assert.Equal((1, 1, 1), (depth.Active, depth.Leased, depth.DeadLettered));
        await leased.CompleteAsync(CancellationToken.None);
    }

    /// <summary>Remote brokers report depth approximately and with a delay; poll briefly.</summary>
    protected static async Task<QueueDepth> WaitForDepthAsync(IWorkQueue queue, Func<QueueDepth, bool> expected)
    {
        var depth = await queue.GetDepthAsync(CancellationToken.None);
        for (var i = 0; i < 50 && !expected(depth); i++)
        {
            await Task.Delay(100);
            depth = await queue.GetDepthAsync(CancellationToken.None);
        }
        return depth;
    }
}

public sealed class EmbeddedWorkQueueTests : WorkQueueConformance
{
    protected override Task<IWorkQueue> CreateQueueAsync(TimeSpan leaseDuration, int maxDeliveryCount) =>
        Task.FromResult<IWorkQueue>(new Queue.Adapters.Embedded.EmbeddedWorkQueue("test", new WorkQueueOptions { LeaseDuration = leaseDuration, MaxDeliveryCount = maxDeliveryCount }));

    [Fact]
    public async Task ExpiredLeaseAtMaxDeliveriesIsDeadLettered()
    {
        var queue = await CreateQueueAsync(TimeSpan.FromMilliseconds(200), 1);
        await queue.SendAsync(Encoding.UTF8.GetBytes("x"), CancellationToken.None);
        var message = (await queue.ReceiveAsync(1, TimeSpan.FromSeconds(1), CancellationToken.None))[0];
        await Task.Delay(600);
        var dead = await queue.ReceiveDeadLetteredAsync(1, TimeSpan.FromSeconds(1), CancellationToken.None);
        Assert.Single(dead);
        Assert.Equal("MaxDeliveryCountExceeded", dead[0].DeadLetterReason);
        await Assert.ThrowsAsync<LeaseLostException>(() => message.RenewLockAsync(CancellationToken.None));
    }
}
