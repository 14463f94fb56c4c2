namespace Queue.Contracts.Ports;

/// <summary>Runs an SDK call and rethrows what its adapter's translation makes of a failure (null: let it pass).</summary>
public static class AdapterCalls
{
    public static async Task<T> RunAsync<T>(Func<Task<T>> call, Func<Exception, Exception?> translate)
    {
        try
        {
            return await call();
        }
        catch (Exception e) when (translate(e) is { } translated)
        {
            throw translated;
        }
    }

    public static async Task RunAsync(Func<Task> call, Func<Exception, Exception?> translate)
    {
        try
        {
            await call();
        }
        catch (Exception e) when (translate(e) is { } translated)
        {
            throw translated;
        }
    }
}
